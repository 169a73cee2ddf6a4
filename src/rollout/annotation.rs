//! The pod-template annotation that restarts a workload when a Secret's content changes.

use sha2::{Digest, Sha256};

/// Prefix of the annotation key, one key per Secret: `vaultsync.dev/secret.<name>`.
pub const KEY_PREFIX: &str = "vaultsync.dev/secret.";

/// Annotation on a workload that keeps `spec.rollout.auto` from restarting it: `"false"`.
pub const OPT_OUT_ANNOTATION: &str = "vaultsync.dev/rollout";

/// The name part of an annotation key is at most 63 characters.
const MAX_NAME: usize = 63;

/// The pod-template annotation key for Secret `secret`. Its value is the Secret's keyed content
/// hash (`status.secretHash`), so the same content never restarts a workload twice and several
/// Secrets feeding one workload each have a key of their own.
///
/// A Secret name too long for the 63-character name part is cut and suffixed with the first 8
/// hex digits of the SHA-256 of the full name, so distinct names keep distinct keys.
pub fn key_for(secret: &str) -> String {
    let (group, stem) = KEY_PREFIX.split_at(KEY_PREFIX.find('/').map_or(0, |i| i + 1));
    let name = format!("{stem}{secret}");
    if name.len() <= MAX_NAME {
        return format!("{group}{name}");
    }
    let digest = hex::encode(Sha256::digest(secret.as_bytes()));
    // Secret names are ASCII (DNS subdomains), so cutting at a byte index is safe.
    let keep = MAX_NAME - 9;
    format!("{group}{}-{}", &name[..keep], &digest[..8])
}

/// Whether the workload annotations opt out of `spec.rollout.auto`.
pub fn opted_out(annotations: Option<&std::collections::BTreeMap<String, String>>) -> bool {
    annotations
        .and_then(|a| a.get(OPT_OUT_ANNOTATION))
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kubernetes' qualified-name rule for the part after the `/`.
    fn valid_name_part(name: &str) -> bool {
        let bytes = name.as_bytes();
        !name.is_empty()
            && name.len() <= 63
            && bytes[0].is_ascii_alphanumeric()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric()
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
    }

    #[test]
    fn a_short_secret_name_is_part_of_the_key() {
        assert_eq!(key_for("shop-config"), "vaultsync.dev/secret.shop-config");
    }

    #[test]
    fn keys_are_valid_annotation_keys_for_every_name_length() {
        for len in [1, 55, 56, 57, 63, 100, 253] {
            let secret: String = (0..len)
                .map(|i| if i % 5 == 4 && i + 1 < len { '.' } else { 'a' })
                .collect();
            let key = key_for(&secret);
            let (prefix, name) = key.split_once('/').expect("a prefixed key");
            assert_eq!(prefix, "vaultsync.dev");
            assert!(valid_name_part(name), "{key} (from a {}-character name)", secret.len());
        }
    }

    #[test]
    fn long_names_that_share_a_prefix_get_distinct_keys() {
        let a = format!("{}-a", "x".repeat(80));
        let b = format!("{}-b", "x".repeat(80));
        assert_ne!(key_for(&a), key_for(&b));
        assert_eq!(key_for(&a), key_for(&a), "stable");
        assert_eq!(key_for(&a).len(), "vaultsync.dev/".len() + 63);
    }

    #[test]
    fn only_false_opts_out() {
        let with = |v: &str| Some([(OPT_OUT_ANNOTATION.to_owned(), v.to_owned())].into());
        assert!(opted_out(with("false").as_ref()));
        assert!(opted_out(with("False").as_ref()));
        assert!(!opted_out(with("true").as_ref()));
        assert!(!opted_out(None));
    }
}

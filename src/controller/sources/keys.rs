//! Secret key rules: what a Secret accepts, and what `envFrom` exposes.

use std::collections::BTreeMap;

use crate::controller::error::{Error, Result};

/// Secret keys must be non-empty, at most 253 characters of `[-._a-zA-Z0-9]`. `owner` says where
/// the key comes from (`source db`, `template`), for the message.
pub fn check(key: &str, owner: &str) -> Result<()> {
    let valid = !key.is_empty()
        && key.len() <= 253
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidKey(format!(
            "{owner} has key {key:?}, which is not a valid Secret key ([-._a-zA-Z0-9], at most 253 characters)"
        )))
    }
}

/// Whether `envFrom` exposes `key` as an environment variable (a C identifier, the rule every
/// shell and Kubernetes before the relaxed validation of 1.34 apply).
pub fn is_env_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `key` as an environment variable name: upper case, every character other than a letter or
/// digit becomes `_`, and a leading digit gets a `_` before it.
pub fn env_name(key: &str) -> String {
    let mut name: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

/// Renames every key of `data` with [`env_name`]; two keys that map to the same name are an error
/// naming both.
pub fn to_env<V>(data: BTreeMap<String, V>) -> Result<BTreeMap<String, V>> {
    let mut origin: BTreeMap<String, String> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (key, value) in data {
        let name = env_name(&key);
        if let Some(other) = origin.insert(name.clone(), key.clone()) {
            return Err(Error::InvalidKey(format!(
                "keys {other:?} and {key:?} both become {name} with spec.destination.envKeys"
            )));
        }
        out.insert(name, value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_dashed_and_digit_leading_keys_become_env_names() {
        assert_eq!(env_name("db.password"), "DB_PASSWORD");
        assert_eq!(env_name("api-key"), "API_KEY");
        assert_eq!(env_name("2fa.seed"), "_2FA_SEED");
        assert_eq!(env_name("ALREADY_OK"), "ALREADY_OK");
        assert!(is_env_name("DB_PASSWORD") && is_env_name("_x1") && is_env_name("lower"));
        assert!(!is_env_name("db.password") && !is_env_name("1x") && !is_env_name("a-b") && !is_env_name(""));
    }

    #[test]
    fn keys_that_collide_as_env_names_are_an_error_naming_both() {
        let data: BTreeMap<String, u8> = [("db.password".into(), 1), ("db-password".into(), 2)].into();
        let err = to_env(data).unwrap_err();
        assert_eq!(err.reason(), "InvalidKey");
        let message = err.to_string();
        assert!(
            message.contains("\"db-password\"") && message.contains("\"db.password\""),
            "{message}"
        );
    }

    #[test]
    fn keys_a_secret_cannot_hold_are_refused_with_the_key_named() {
        let err = check("bad key/", "source 0").unwrap_err();
        assert_eq!(err.reason(), "InvalidKey");
        assert!(err.to_string().contains("source 0 has key \"bad key/\""));
    }
}

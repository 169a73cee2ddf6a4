//! Which Vault paths a source may name. The CRD schema holds the same rules (so a bad spec is
//! refused at `kubectl apply`); [`check_source`] applies them again at sync time, for objects
//! stored before the rules existed.
//!
//! Refused, for every source kind and every identity:
//! - a mount with a segment naming Vault's own machinery: `sys` (policies, leases, wrapping,
//!   mounts), `auth` (token creation and lookup, every login), `cubbyhole` (the calling token's
//!   private storage) and `identity` (entities, groups, OIDC tokens) — in any segment, because
//!   Vault also routes a namespace given as a path prefix (`team-a/sys/...`);
//! - for sources whose mount and path form the request path directly (`kv` engine v1, `dynamic`),
//!   the same names in any segment of the path;
//! - `.` and `..` segments, empty segments, and `%`, `\`, `?`, `#`, which URL parsing would turn
//!   into another path, a query or a fragment.

use super::source::{KvEngine, LeasedSpec, SourceSpec};

/// Mount names that reach Vault's own machinery rather than a secrets engine.
pub const RESERVED_SEGMENTS: [&str; 4] = ["sys", "auth", "cubbyhole", "identity"];

/// Characters a mount or path may not hold (besides whitespace and control characters).
const FORBIDDEN_CHARS: [char; 4] = ['%', '\\', '?', '#'];

/// Schema pattern of a mount or path: segments of allowed characters separated by single slashes.
pub const VAULT_PATH_PATTERN: &str = r"^[^/\s%?#\\]+(/[^/\s%?#\\]+)*$";

/// CEL rule refusing `.` and `..` segments (every mount and path).
pub const NO_DOT_SEGMENTS_RULE: &str = "!self.split('/').exists(s, s == '.' || s == '..')";

/// CEL rule refusing reserved segments (every mount; the path of kv v1 and dynamic sources).
pub const NO_RESERVED_SEGMENTS_RULE: &str = "!self.split('/').exists(s, s in ['sys', 'auth', 'cubbyhole', 'identity'])";

/// Checks the Vault paths of `source`; the error names the field and the rule.
pub fn check_source(spec: SourceSpec<'_>, field: &str) -> Result<(), String> {
    match spec {
        SourceSpec::Kv(kv) => {
            check(&kv.mount, &format!("{field}.kv.mount"), true)?;
            check(&kv.path, &format!("{field}.kv.path"), kv.engine == KvEngine::V1)
        }
        SourceSpec::Leased(LeasedSpec::Dynamic(d)) => {
            check(&d.mount, &format!("{field}.dynamic.mount"), true)?;
            check(&d.path, &format!("{field}.dynamic.path"), true)
        }
        SourceSpec::Leased(LeasedSpec::Pki(p)) => {
            check(&p.mount, &format!("{field}.pki.mount"), true)?;
            check(&p.role, &format!("{field}.pki.role"), false)
        }
    }
}

/// Checks the mount of an auth method (`auth/<mount>/login`): a path that stays under `auth/`.
pub fn check_auth_mount(mount: &str, field: &str) -> Result<(), String> {
    check(mount, field, false)
}

/// Checks one mount or path; `reserved` also refuses [`RESERVED_SEGMENTS`].
fn check(value: &str, field: &str, reserved: bool) -> Result<(), String> {
    if value
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || FORBIDDEN_CHARS.contains(&c))
    {
        return Err(format!(
            "{field} may not contain whitespace, control characters, '%', '\\', '?' or '#'"
        ));
    }
    for segment in value.split('/') {
        match segment {
            "" => return Err(format!("{field} may not start or end with '/' or hold '//'")),
            "." | ".." => return Err(format!("{field} may not hold '.' or '..' segments")),
            s if reserved && RESERVED_SEGMENTS.contains(&s) => {
                return Err(format!(
                    "{field} may not name Vault's reserved path {s:?} (sys, auth, cubbyhole and identity are refused for every source and identity)"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source(v: serde_json::Value) -> super::super::source::Source {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn reserved_mounts_are_refused_for_every_kind_and_named_in_the_message() {
        for mount in ["sys", "auth", "cubbyhole", "identity", "team-a/sys", "auth/token"] {
            for s in [
                json!({"kv": {"mount": mount, "path": "x"}}),
                json!({"kv": {"mount": mount, "path": "x", "engine": "v1"}}),
                json!({"dynamic": {"mount": mount, "path": "creds/x"}}),
                json!({"pki": {"mount": mount, "role": "r", "commonName": "a"}}),
            ] {
                let err = check_source(source(s.clone()).spec().unwrap(), "spec.sources[0]").unwrap_err();
                assert!(err.contains("mount") && err.contains("reserved"), "{s}: {err}");
            }
        }
    }

    #[test]
    fn paths_that_would_leave_their_mount_are_refused() {
        let attacks = [
            json!({"kv": {"mount": "auth", "path": "token/lookup-self", "engine": "v1"}}),
            json!({"kv": {"mount": "secret", "path": "../sys/policies/acl/x", "engine": "v1"}}),
            json!({"kv": {"mount": "secret", "path": "a/./b"}}),
            json!({"kv": {"mount": "secret", "path": "%2e%2e/sys/x"}}),
            json!({"kv": {"mount": "secret", "path": "a\\..\\b"}}),
            json!({"kv": {"mount": "secret", "path": "a?list=true"}}),
            json!({"kv": {"mount": "secret", "path": "a//b"}}),
            json!({"dynamic": {"mount": "team-a", "path": "sys/policies/acl/x", "method": "PUT"}}),
            json!({"kv": {"mount": "kv1", "path": "child/auth/token/create", "engine": "v1"}}),
        ];
        for s in attacks {
            assert!(
                check_source(source(s.clone()).spec().unwrap(), "s").is_err(),
                "{s} should be refused"
            );
        }
    }

    #[test]
    fn the_schema_rules_name_the_same_reserved_segments() {
        let crd = serde_json::to_string(&<crate::api::VaultSecret as kube::CustomResourceExt>::crd()).unwrap();
        for segment in RESERVED_SEGMENTS {
            assert!(NO_RESERVED_SEGMENTS_RULE.contains(&format!("'{segment}'")), "{segment}");
        }
        // The kv v1 and dynamic path rules spell the list out too.
        let list = "['sys', 'auth', 'cubbyhole', 'identity']";
        assert!(NO_RESERVED_SEGMENTS_RULE.contains(list));
        assert!(
            crd.matches(list).count() >= 5,
            "mount rules of three kinds and two path rules"
        );
    }

    #[test]
    fn ordinary_paths_pass_including_a_kv_v2_secret_named_like_a_reserved_mount() {
        for s in [
            json!({"kv": {"mount": "secret", "path": "shop/config"}}),
            json!({"kv": {"mount": "secret", "path": "shop/auth"}}),
            json!({"kv": {"mount": "team/kv", "path": "a.b/c-d_e@f"}}),
            json!({"dynamic": {"mount": "database", "path": "creds/shop"}}),
            json!({"pki": {"mount": "pki_int", "role": "shop", "commonName": "shop.svc"}}),
        ] {
            assert_eq!(check_source(source(s.clone()).spec().unwrap(), "s"), Ok(()), "{s}");
        }
    }
}

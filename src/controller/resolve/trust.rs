//! The trust boundary the administrator draws and no VaultSecret author can widen: which Vault
//! servers receive credentials, which ServiceAccount tokens may be minted, which Vault paths may be
//! called, and what the operator's own identity may be used for. Every check here runs before
//! any request to Vault (and before a TokenRequest), so a refused VaultSecret sends nothing.

use kube::ResourceExt;
use url::Url;

use super::super::Settings;
use super::super::destination;
use super::super::error::{Error, Result};
use crate::api::{AuthMethod, SecretKeyRef, TokenRequestSpec, VaultSecret, check_auth_mount, check_source};
use crate::reasons;
use crate::vault::parse_address;

/// Suffix of the Secrets that keep the credentials of leased sources (`<vaultsecret>.vaultsync-leases`).
pub const LEASES_SUFFIX: &str = ".vaultsync-leases";

/// What the boundary refused; each is its own `Ready` reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `spec.vault.address` is not an address the administrator allows.
    VaultAddress,
    /// `spec.auth.kubernetes.audiences` (or `jwt`) names an audience the administrator does not
    /// allow, or one the Kubernetes API server accepts.
    Audience,
    /// `spec.auth.kubernetes.tokenExpirationSeconds` (or `jwt`) exceeds `--max-token-expiration`.
    TokenLifetime,
    /// The operator's own identity asked for more than the administrator allows.
    OperatorIdentity,
    /// A source names a reserved Vault path.
    ReservedPath,
    /// The destination would overwrite one of the operator's own Secrets.
    Destination,
}

impl Refusal {
    /// The `Ready` reason, from the reasons table.
    pub(in crate::controller) fn entry(self) -> reasons::Ready {
        match self {
            Refusal::VaultAddress => reasons::VAULT_ADDRESS_NOT_ALLOWED,
            Refusal::Audience => reasons::AUDIENCE_NOT_ALLOWED,
            Refusal::TokenLifetime => reasons::TOKEN_LIFETIME_NOT_ALLOWED,
            Refusal::OperatorIdentity => reasons::OPERATOR_IDENTITY_NOT_ALLOWED,
            Refusal::ReservedPath => reasons::RESERVED_PATH,
            Refusal::Destination => reasons::DESTINATION_NOT_ALLOWED,
        }
    }

    fn because(self, message: String) -> Error {
        Error::NotAllowed { refusal: self, message }
    }
}

/// Checks what needs no API call: the sources' Vault paths, the destination name, the
/// ServiceAccount token a Kubernetes login would request, and where the operator's own token
/// would go.
pub fn check_spec(vs: &VaultSecret, settings: &Settings) -> Result<()> {
    let mut names = std::collections::HashSet::new();
    for (index, source) in vs.spec.sources.iter().enumerate() {
        let field = format!("spec.sources[{index}]");
        // Stored before the schema refused it: two sources under one name would share a lease.
        if !names.insert(source.name_or_index(index)) {
            return Err(Error::InvalidSpec(format!(
                "{field}: source name {:?} is used twice; source names must be unique",
                source.name_or_index(index)
            )));
        }
        let spec = source
            .spec()
            .ok_or_else(|| Error::InvalidSpec(format!("{field} must set exactly one of kv, dynamic or pki")))?;
        check_source(spec, &field).map_err(|m| Refusal::ReservedPath.because(m))?;
    }
    check_destination(vs, settings)?;
    match vs.spec.auth.as_deref() {
        // Elsewhere the operator's identity is refused anyway (`NoVaultIdentity`).
        None if operator_allowed(&vs.namespace().unwrap_or_default(), settings) => {
            check_operator_connection(vs, settings)?;
        }
        None => {}
        Some(auth) => match auth.method() {
            Some(AuthMethod::Kubernetes(k)) => {
                check_mount(&k.mount, "spec.auth.kubernetes.mount")?;
                check_token_request(k.token_request(), settings)?;
            }
            Some(AuthMethod::Jwt(j)) => {
                check_mount(&j.mount, "spec.auth.jwt.mount")?;
                check_token_request(j.token_request(), settings)?;
            }
            Some(AuthMethod::AppRole(a)) => check_mount(&a.mount, "spec.auth.appRole.mount")?,
            Some(AuthMethod::Token(_)) | None => {}
        },
    }
    Ok(())
}

fn check_mount(mount: &str, field: &str) -> Result<()> {
    check_auth_mount(mount, field).map_err(Error::InvalidSpec)
}

/// The destination may not be a leases Secret (its own or another VaultSecret's) nor, in the
/// operator's namespace, a Secret the operator keeps for itself.
fn check_destination(vs: &VaultSecret, settings: &Settings) -> Result<()> {
    let name = destination::destination_name(vs);
    if name.ends_with(LEASES_SUFFIX) {
        return Err(Refusal::Destination.because(format!(
            "the destination Secret {name} would be a leases Secret of the operator (names ending in {LEASES_SUFFIX}); set spec.destination.name"
        )));
    }
    let own = [
        settings.hash_key_secret.as_str(),
        super::super::tokens::SECRET_NAME,
        super::super::leases::owed::SECRET_NAME,
    ];
    if vs.namespace().as_deref() == Some(settings.namespace.as_str()) && own.contains(&name.as_str()) {
        return Err(Refusal::Destination.because(format!(
            "the destination Secret {name} is one the operator keeps for itself in namespace {}",
            settings.namespace
        )));
    }
    Ok(())
}

/// Audiences and lifetime of the TokenRequest of a login that presents a ServiceAccount token.
fn check_token_request(spec: TokenRequestSpec<'_>, settings: &Settings) -> Result<()> {
    let field = spec.field;
    if let Some(bad) = spec
        .audiences
        .iter()
        .find(|a| !settings.allowed_token_audiences.contains(a))
    {
        return Err(Refusal::Audience.because(format!(
            "{field}.audiences: audience {bad:?} is not allowed by the operator (--allowed-token-audiences: {})",
            settings.allowed_token_audiences.join(", ")
        )));
    }
    let max = settings.max_token_expiration.as_secs();
    if u64::try_from(spec.expiration_seconds).is_ok_and(|s| s > max) {
        return Err(Refusal::TokenLifetime.because(format!(
            "{field}.tokenExpirationSeconds {} exceeds the operator's --max-token-expiration of {max} s",
            spec.expiration_seconds
        )));
    }
    Ok(())
}

/// Whether `address` is one the administrator allows: the default address or one of
/// `--allowed-vault-addresses`. Nothing is sent to any other.
pub fn check_address(address: &Url, settings: &Settings) -> Result<()> {
    let allowed = settings.vault_address.iter().chain(&settings.allowed_vault_addresses);
    if allowed.clone().any(|a| same_server(a, address)) {
        return Ok(());
    }
    let list: Vec<&str> = allowed.map(Url::as_str).collect();
    Err(Refusal::VaultAddress.because(format!(
        "spec.vault.address {address} is not an address this operator may send credentials to (allowed: {}; an administrator adds addresses with --allowed-vault-addresses)",
        if list.is_empty() { "none".to_owned() } else { list.join(", ") }
    )))
}

/// Whether VaultSecrets of namespace `ns` may use the operator's own token at all
/// (`--default-identity-namespaces`).
pub fn operator_allowed(ns: &str, settings: &Settings) -> bool {
    settings.default_identity_namespaces.iter().any(|a| a == "*" || a == ns)
}

/// The operator's own token goes only to the operator's own connection: the default address and
/// CA, and no Vault namespace of the author's choosing.
fn check_operator_connection(vs: &VaultSecret, settings: &Settings) -> Result<()> {
    let spec = vs.spec.vault.as_deref();
    let default = settings.vault_address.as_ref();
    let address = match spec.and_then(|v| v.address.as_deref()) {
        Some(a) => parse_address(a).ok(),
        None => default.cloned(),
    };
    if !default.zip(address.as_ref()).is_some_and(|(d, a)| same_server(d, a)) {
        return Err(Refusal::OperatorIdentity.because(
            "the operator's own Vault identity is only used with its default address (--vault-address); remove spec.vault.address or set spec.auth".into(),
        ));
    }
    if spec.is_some_and(|v| v.ca_secret_ref.is_some() || v.namespace.is_some()) {
        return Err(Refusal::OperatorIdentity.because(
            "the operator's own Vault identity is only used with its own CA and Vault namespace; remove spec.vault.caSecretRef and spec.vault.namespace or set spec.auth".into(),
        ));
    }
    Ok(())
}

/// The operator's own token reads only `kv` sources, unless the namespace is also in
/// `--default-identity-leases-namespaces` (revoking leases it issued earlier stays possible).
pub fn check_operator_sources(vs: &VaultSecret, settings: &Settings) -> Result<()> {
    let ns = vs.namespace().unwrap_or_default();
    let leases_allowed = settings
        .default_identity_leases_namespaces
        .iter()
        .any(|a| a == "*" || *a == ns);
    if let Some((index, leased)) = vs
        .spec
        .sources
        .iter()
        .enumerate()
        .find_map(|(i, s)| Some((i, s.leased()?)))
        && !leases_allowed
    {
        return Err(Refusal::OperatorIdentity.because(format!(
            "spec.sources[{index}] is a {} source: the operator's own Vault identity reads only kv sources in namespace {ns} (--default-identity-leases-namespaces); set spec.auth",
            leased.kind()
        )));
    }
    Ok(())
}

/// A Secret reference of the spec names a Secret of the VaultSecret's namespace and nothing else:
/// a DNS subdomain (never `..` or `/`, which would change the request URL), checked again here for
/// objects stored before the CRD had the pattern.
pub fn check_secret_ref(r: &SecretKeyRef, field: &str) -> Result<()> {
    let subdomain = !r.name.is_empty()
        && r.name.len() <= 253
        && r.name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !r.name.starts_with(['-', '.'])
        && !r.name.ends_with(['-', '.']);
    if subdomain {
        Ok(())
    } else {
        Err(Error::InvalidSpec(format!(
            "{field}.name must be the name of a Secret in this namespace (lower-case letters, digits, '-' and '.')"
        )))
    }
}

/// Same scheme, host, port and path (ignoring a trailing slash).
pub(in crate::controller) fn same_server(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
        && a.path().trim_end_matches('/') == b.path().trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::vault::parse_address;

    fn settings() -> Settings {
        Settings {
            vault_address: Some(parse_address("https://vault.example:8200").unwrap()),
            allowed_vault_addresses: vec![parse_address("https://bao.team.example").unwrap()],
            allowed_token_audiences: vec!["vault".into()],
            max_token_expiration: Duration::from_secs(600),
            default_identity_namespaces: vec!["*".into()],
            default_identity_leases_namespaces: vec!["platform".into()],
            ..Settings::for_tests()
        }
    }

    fn vs(ns: &str, spec: serde_json::Value) -> VaultSecret {
        let mut vs = VaultSecret::new("app", serde_json::from_value(spec).unwrap());
        vs.metadata.namespace = Some(ns.into());
        vs
    }

    fn reason(r: Result<()>) -> &'static str {
        r.unwrap_err().reason()
    }

    #[test]
    fn only_the_default_and_allow_listed_addresses_are_trusted() {
        let s = settings();
        for ok in [
            "https://vault.example:8200",
            "https://VAULT.example:8200/",
            "https://bao.team.example:443",
        ] {
            assert!(check_address(&parse_address(ok).unwrap(), &s).is_ok(), "{ok}");
        }
        for bad in [
            "http://vault.example:8200",
            "https://vault.example:8201",
            "https://vault.example.evil:8200",
            "https://vault.example:8200/other",
        ] {
            assert_eq!(
                reason(check_address(&parse_address(bad).unwrap(), &s)),
                "VaultAddressNotAllowed"
            );
        }
        let none = Settings {
            vault_address: None,
            allowed_vault_addresses: Vec::new(),
            ..settings()
        };
        let err = check_address(&parse_address("https://x.example").unwrap(), &none).unwrap_err();
        assert!(err.to_string().contains("allowed: none"), "{err}");
    }

    #[test]
    fn audiences_lifetimes_and_mounts_beyond_the_administrators_are_refused_for_both_token_logins() {
        let s = settings();
        for method in ["kubernetes", "jwt"] {
            let login = |extra: serde_json::Value| {
                let mut auth = json!({"role": "r", "serviceAccountName": "app"});
                auth.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
                vs(
                    "a",
                    json!({"auth": {method: auth}, "sources": [{"kv": {"mount": "secret", "path": "p"}}]}),
                )
            };
            assert!(check_spec(&login(json!({})), &s).is_ok(), "{method}");
            let api = login(json!({"audiences": ["vault", "https://kubernetes.default.svc"]}));
            let err = check_spec(&api, &s).unwrap_err();
            assert_eq!(err.reason(), "AudienceNotAllowed", "{method}");
            assert!(
                err.to_string().contains(&format!("spec.auth.{method}.audiences")),
                "{err}"
            );
            let long = login(json!({"tokenExpirationSeconds": 86400}));
            assert_eq!(reason(check_spec(&long, &s)), "TokenLifetimeNotAllowed", "{method}");
            let escape = login(json!({"mount": "kubernetes/../../sys"}));
            assert_eq!(reason(check_spec(&escape, &s)), "InvalidSpec", "{method}");
        }
    }

    fn check_operator_use(vs: &VaultSecret, s: &Settings) -> Result<()> {
        check_spec(vs, s)?;
        check_operator_sources(vs, s)
    }

    #[test]
    fn the_operator_identity_reads_kv_at_its_own_connection_only() {
        let s = settings();
        let kv = json!([{"kv": {"mount": "secret", "path": "p"}}]);
        let db = json!([{"dynamic": {"mount": "database", "path": "creds/x", "method": "POST"}}]);
        assert!(check_operator_use(&vs("a", json!({"sources": kv})), &s).is_ok());
        let same = vs(
            "a",
            json!({"vault": {"address": "https://vault.example:8200/"}, "sources": kv}),
        );
        assert!(check_operator_use(&same, &s).is_ok(), "the default address, spelt out");
        for vault in [
            json!({"address": "https://bao.team.example"}),
            json!({"namespace": "team"}),
            json!({"caSecretRef": {"name": "ca", "key": "ca.crt"}}),
        ] {
            let other = vs("a", json!({"vault": vault, "sources": kv}));
            assert_eq!(
                reason(check_operator_use(&other, &s)),
                "OperatorIdentityNotAllowed",
                "{vault}"
            );
        }
        let leased = vs("a", json!({"sources": db}));
        assert_eq!(reason(check_operator_use(&leased, &s)), "OperatorIdentityNotAllowed");
        assert!(check_operator_use(&vs("platform", json!({"sources": db})), &s).is_ok());
        let without_default = Settings {
            vault_address: None,
            ..settings()
        };
        let r = check_operator_use(&vs("a", json!({"sources": kv})), &without_default);
        assert_eq!(reason(r), "OperatorIdentityNotAllowed");
    }

    #[test]
    fn the_operators_own_secrets_are_never_a_destination() {
        let s = settings();
        let kv = json!([{"kv": {"mount": "secret", "path": "p"}}]);
        let to = |ns: &str, name: &str| vs(ns, json!({"sources": kv, "destination": {"name": name}}));
        assert_eq!(
            reason(check_spec(&to("a", "x.vaultsync-leases"), &s)),
            "DestinationNotAllowed"
        );
        for own in ["vaultsync-lease-tokens", "vaultsync-owed-revocations"] {
            assert_eq!(
                reason(check_spec(&to(&s.namespace, own), &s)),
                "DestinationNotAllowed",
                "{own}"
            );
        }
        assert!(
            check_spec(&to("a", "vaultsync-lease-tokens"), &s).is_ok(),
            "only in the operator's namespace"
        );
        let mut named = vs("a", json!({"sources": kv}));
        named.metadata.name = Some("b.vaultsync-leases".into());
        assert_eq!(
            reason(check_spec(&named, &s)),
            "DestinationNotAllowed",
            "the default name too"
        );
    }

    #[test]
    fn secret_references_cannot_climb_out_of_the_namespace() {
        let r = |name: &str| SecretKeyRef {
            name: name.into(),
            key: "k".into(),
        };
        assert!(check_secret_ref(&r("vault-ca"), "spec.vault.caSecretRef").is_ok());
        for bad in ["../../a/secrets/a-token", "a/b", "", "A", ".hidden", "x%2f"] {
            let err = check_secret_ref(&r(bad), "spec.auth.token.secretRef").unwrap_err();
            assert_eq!(err.reason(), "InvalidSpec", "{bad}");
            assert!(err.to_string().contains("spec.auth.token.secretRef.name"), "{err}");
        }
    }

    #[test]
    fn reserved_paths_are_refused_with_the_field_named() {
        let s = settings();
        let bad = vs(
            "a",
            json!({"sources": [{"kv": {"mount": "auth", "path": "token/lookup-self", "engine": "v1"}}]}),
        );
        let err = check_spec(&bad, &s).unwrap_err();
        assert_eq!(err.reason(), "ReservedPath");
        assert!(err.to_string().contains("spec.sources[0].kv.mount"), "{err}");
    }
}

//! Where tokens that own leases are kept across operator restarts, and how they are named.
//!
//! Vault revokes every lease a token created when that token expires. A restarted operator (or
//! a new leader) therefore picks up the token its predecessor used, rather than logging in anew
//! and letting the old token — and with it every credential it issued — expire.

use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

use super::token::Session;
use super::{EXPIRY_MARGIN, Entry, Handle, Sessions, State, start_renewing};
use crate::vault::{self, Connection, Field, Identity, login};

/// Persistent storage for tokens, keyed by [`key`]. Values are opaque to the store (see
/// [`Kept`]). Implementations must keep them secret (the controller uses a Secret in the
/// operator's namespace).
pub trait TokenStore: Send + Sync {
    /// The value kept under `key`, if any. Failures read as "none" (the caller logs in).
    fn load(&self, key: String) -> BoxFuture<'_, Option<String>>;
    /// Keeps `value` under `key`, replacing what was there. Failures are logged, not returned.
    fn save(&self, key: String, value: String) -> BoxFuture<'_, ()>;
    /// Forgets `key`.
    fn remove(&self, key: String) -> BoxFuture<'_, ()>;
    /// Every key and value kept. Failures read as "none".
    fn entries(&self) -> BoxFuture<'_, Vec<(String, String)>>;
}

/// What is kept under a key, encoded as versioned JSON: the token and where it is valid (the
/// address and Vault namespace, so that a token nobody claims any more can still be revoked; never
/// a CA bundle, which would make the Secret large). A bare token is what versions before the
/// encoding kept.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Kept {
    /// Encoding version: 1.
    v: u8,
    /// Vault address the token is valid at; `None` for a bare token.
    pub address: Option<String>,
    /// Vault namespace of the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The token.
    pub token: String,
}

impl Kept {
    /// The value kept for `token` issued at `conn`.
    pub fn encode(conn: &Connection, token: &str) -> String {
        let kept = Kept {
            v: 1,
            address: Some(conn.address.to_string()),
            namespace: conn.namespace.clone(),
            token: token.to_owned(),
        };
        serde_json::to_string(&kept).unwrap_or_default()
    }

    /// Reads a kept value: the versioned encoding, or a bare token.
    pub fn decode(value: &str) -> Kept {
        match serde_json::from_str::<Kept>(value) {
            Ok(kept) if kept.v == 1 => kept,
            _ => Kept {
                v: 1,
                address: None,
                namespace: None,
                token: value.trim().to_owned(),
            },
        }
    }
}

/// A stable name for (connection, identity): the same after a restart and an upgrade, nothing
/// secret in it. Version 2 hashes an explicit encoding (`v2-` prefix): the address, the Vault
/// namespace, the method and the identity's fields in order, each length-prefixed, lists joined
/// by `,`. Renaming a Rust type or field changes nothing.
pub fn key(conn: &Connection, identity: &Identity) -> String {
    let mut fields: Vec<std::borrow::Cow<'_, str>> = vec![
        conn.address.as_str().into(),
        conn.namespace.as_deref().unwrap_or_default().into(),
        identity.method().into(),
    ];
    fields.extend(identity.fields().map(|(_, value)| match value {
        Field::Text(text) => text.as_str().into(),
        Field::List(list) => list.join(",").into(),
    }));
    let mut hash = Sha256::new();
    for field in fields {
        hash.update((field.len() as u64).to_be_bytes());
        hash.update(field.as_bytes());
    }
    format!("v2-{}", hex::encode(&hash.finalize()[..16]))
}

/// The key versions before 2 used, from the `Debug` output of the identity enum they had: read
/// once, to carry a token kept by an older operator over to [`key`]. `None` for methods those
/// versions did not have. Remove with the version after next.
pub fn legacy_key(conn: &Connection, identity: &Identity) -> Option<String> {
    let mut hash = Sha256::new();
    hash.update(conn.address.as_str());
    hash.update([0]);
    hash.update(conn.namespace.as_deref().unwrap_or_default());
    hash.update([0]);
    hash.update(legacy_debug(identity)?);
    Some(hex::encode(&hash.finalize()[..16]))
}

/// What `format!("{identity:?}")` printed for the enum `Identity` of versions before 2.
fn legacy_debug(identity: &Identity) -> Option<String> {
    let variant = match identity.method() {
        "operator" => return Some("Operator".into()),
        "kubernetes" => "Kubernetes",
        "approle" => "AppRole",
        "token" => "Token",
        _ => return None,
    };
    let fields: Vec<String> = identity
        .fields()
        .map(|(name, value)| match value {
            Field::Text(text) => format!("{name}: {text:?}"),
            Field::List(list) => format!("{name}: {list:?}"),
        })
        .collect();
    Some(format!("{variant} {{ {} }}", fields.join(", ")))
}

/// A short hash that names a token in status and metrics without revealing it.
pub fn token_ref(token: &str) -> String {
    hex::encode(&Sha256::digest(token.as_bytes())[..8])
}

impl Sessions {
    /// Keeps the current token of `identity` alive until `until` (leases it issued live that
    /// long), and in the [`TokenStore`] so that a restarted operator uses it too.
    pub async fn hold(&self, conn: &Connection, identity: &Identity, until: Instant) {
        let entry = self.entry(conn, identity);
        {
            let mut held = entry.held_until.lock();
            *held = (*held).max(Some(until));
        }
        let mut state = entry.state.lock().await;
        state.held_at = Some(Instant::now());
        let Some(session) = state.session.as_ref() else { return };
        if session.ttl.is_none() {
            // A token used as given (the operator's, or one from a Secret) is not ours to keep.
            return;
        }
        let (token, reference) = (session.client.settings.token.clone(), session.token_ref.clone());
        if let Some(store) = &self.store
            && state.saved.as_deref() != Some(reference.as_str())
        {
            store.save(entry.key.clone(), Kept::encode(conn, &token)).await;
            state.saved = Some(reference);
        }
        start_renewing(&entry, &mut state);
    }

    /// Adopts the token a previous operator left in the store, if Vault still accepts it.
    pub(super) async fn restore(&self, entry: &Arc<Entry>, state: &mut State, conn: &Connection) -> Option<Handle> {
        let store = self.store.as_ref()?;
        let token = match store.load(entry.key.clone()).await {
            Some(value) => Kept::decode(&value).token,
            None => {
                // Kept by an older operator under the key it used: carry it over.
                let legacy = entry.legacy_key.clone()?;
                let value = store.load(legacy.clone()).await?;
                let token = Kept::decode(&value).token;
                store.save(entry.key.clone(), Kept::encode(conn, &token)).await;
                store.remove(legacy).await;
                token
            }
        };
        match vault::observe(&self.metrics, "lookup", login::adopt(conn, &token, self.timeout)).await {
            Ok(adopted) if adopted.ttl.is_none_or(|ttl| ttl > EXPIRY_MARGIN * 2) => {
                entry.report_expiry(adopted.ttl);
                let client = Arc::new(adopted.client);
                let session = Session {
                    token_ref: token_ref(&token),
                    client,
                    issued: Instant::now(),
                    ttl: adopted.ttl,
                    increment: adopted.increment,
                    renewable: adopted.renewable,
                    capped: false,
                };
                tracing::info!(
                    token = session.token_ref,
                    "picked up the Vault token a previous operator used"
                );
                let handle = session.handle();
                state.saved = Some(session.token_ref.clone());
                state.held_at = Some(Instant::now());
                state.session = Some(session);
                start_renewing(entry, state);
                Some(handle)
            }
            other => {
                match other {
                    // About to expire, and with it every lease it issued: those are replaced now.
                    Ok(adopted) => entry.ends.note_ref(&token_ref(&token), adopted.ttl.unwrap_or_default()),
                    Err(e) => tracing::info!(
                        reason = e.reason(),
                        "the kept Vault token is no longer usable; logging in"
                    ),
                }
                store.remove(entry.key.clone()).await;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_values_say_where_the_token_is_valid_and_bare_tokens_still_read() {
        let conn = Connection {
            address: crate::vault::parse_address("https://vault.example:8200").unwrap(),
            namespace: Some("team".into()),
            ca_pem: Some(b"-----BEGIN CERTIFICATE-----".to_vec().into()),
        };
        let value = Kept::encode(&conn, "s.token");
        assert!(!value.contains("CERTIFICATE"), "no CA bundle is kept: {value}");
        let kept = Kept::decode(&value);
        assert_eq!(kept.token, "s.token");
        assert_eq!(kept.address.as_deref(), Some("https://vault.example:8200/"));
        assert_eq!(kept.namespace.as_deref(), Some("team"));
        let bare = Kept::decode("s.older\n");
        assert_eq!((bare.token.as_str(), bare.address), ("s.older", None));
    }

    #[test]
    fn names_are_stable_and_reveal_nothing() {
        let conn = Connection {
            address: crate::vault::parse_address("http://127.0.0.1:8200").unwrap(),
            namespace: None,
            ca_pem: None,
        };
        assert_eq!(key(&conn, &Identity::operator()), key(&conn, &Identity::operator()));
        let sa = |uid: &str| {
            Identity::new(
                "kubernetes",
                "kubernetes/shop/app/shop".into(),
                vec![
                    ("mount", "kubernetes".into()),
                    ("role", "shop".into()),
                    ("namespace", "shop".into()),
                    ("service_account", "app".into()),
                    ("uid", uid.into()),
                    ("audiences", ["vault".to_owned()].as_slice().into()),
                ],
            )
        };
        // Pinned: a change here orphans every kept token on upgrade (leases re-issued).
        assert_eq!(key(&conn, &sa("u1")), "v2-0791ce2aec3195332a19d9705b372823");
        assert_ne!(key(&conn, &sa("u1")), key(&conn, &sa("u2")));
        assert_ne!(Some(key(&conn, &sa("u1"))), legacy_key(&conn, &sa("u1")));
        assert!(
            key(&conn, &sa("u1"))
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        );
        let token = "s.canaryTokenValue0123456789";
        let r = token_ref(token);
        assert_eq!(r.len(), 16);
        assert!(!token.contains(&r) && !r.contains("canary"));
    }

    #[test]
    fn legacy_keys_are_what_the_identity_enum_of_earlier_versions_printed() {
        // Strings printed by `#[derive(Debug)]` on the enum versions before 2 had.
        let approle = Identity::new(
            "approle",
            "approle/ns/s".into(),
            vec![
                ("mount", "approle".into()),
                ("role_id", "r-1".into()),
                ("namespace", "ns".into()),
                ("secret", "s".into()),
                ("secret_uid", "u".into()),
                ("secret_version", "7".into()),
            ],
        );
        assert_eq!(
            legacy_debug(&approle).as_deref(),
            Some(
                r#"AppRole { mount: "approle", role_id: "r-1", namespace: "ns", secret: "s", secret_uid: "u", secret_version: "7" }"#
            )
        );
        let sa = Identity::new(
            "kubernetes",
            "kubernetes/shop/app/shop".into(),
            vec![
                ("mount", "kubernetes".into()),
                ("role", "shop".into()),
                ("namespace", "shop".into()),
                ("service_account", "app".into()),
                ("uid", "u1".into()),
                ("audiences", ["vault".to_owned(), "b\"q".to_owned()].as_slice().into()),
            ],
        );
        assert_eq!(
            legacy_debug(&sa).as_deref(),
            Some(
                r#"Kubernetes { mount: "kubernetes", role: "shop", namespace: "shop", service_account: "app", uid: "u1", audiences: ["vault", "b\"q"] }"#
            )
        );
        assert_eq!(legacy_debug(&Identity::operator()).as_deref(), Some("Operator"));
        let jwt = Identity::new("jwt", "jwt/ns/sa/r".into(), vec![("role", "r".into())]);
        assert_eq!(legacy_debug(&jwt), None, "no earlier version kept JWT tokens");
    }
}

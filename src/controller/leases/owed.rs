//! Revocations still owed: leases of a deleted VaultSecret that Vault could not revoke when it was
//! deleted (sealed, down, unreachable, rate-limiting). They are kept in the Secret
//! [`SECRET_NAME`] of the operator's namespace — so they survive the VaultSecret, its namespace
//! and operator restarts — and the leader retries them with backoff until Vault answers or the
//! lease's own expiry makes them moot. Each is revoked with the token that issued it (kept in the
//! token Secret, or the operator's own), so neither the VaultSecret's namespace nor its
//! ServiceAccount is needed any more.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::super::Context;
use super::super::secret_map::SecretMap;
use super::super::tokens::release;
use crate::vault::{self, token_ref};

/// Name of the Secret, in the operator's namespace.
pub const SECRET_NAME: &str = "vaultsync-owed-revocations";

/// Retries of one owed revocation back off from this...
const FIRST_RETRY: Duration = Duration::from_secs(5);
/// ...to at most this, so a Vault that comes back is served within a minute.
const MAX_RETRY: Duration = Duration::from_secs(60);

/// One lease to revoke. Nothing secret: a lease ID is not a credential, the token is named by its
/// [`token_ref`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Owed {
    pub lease: String,
    /// The Vault address the lease was issued at.
    pub address: String,
    /// Its Vault namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The PEM CA the VaultSecret trusted the address with (`spec.vault.caSecretRef`), when not
    /// the operator's own (a CA certificate is public).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// [`token_ref`] of the token that issued it (empty when its status did not say).
    pub token: String,
    /// After this, Vault has revoked it on its own.
    pub expiry: Timestamp,
    /// `namespace/name` of the VaultSecret it belonged to.
    pub object: String,
}

/// The Secret's key for `lease` (lease IDs contain `/`, which keys may not).
fn key(lease: &str) -> String {
    hex::encode(&Sha256::digest(lease.as_bytes())[..12])
}

struct Pending {
    owed: Owed,
    failures: u32,
    next: Instant,
}

/// The record of owed revocations: the Secret, and what it holds, in memory.
pub struct OwedRevocations {
    map: SecretMap,
    pending: Mutex<BTreeMap<String, Pending>>,
    wake: Notify,
}

/// How one attempt went.
enum Outcome {
    Revoked,
    /// Nothing left to revoke (the reason says why).
    Moot(&'static str),
    /// Vault did not answer: try again later.
    Later(vault::Error),
    /// It can never be revoked by this operator (the reason says why).
    Abandoned(String),
}

impl OwedRevocations {
    /// The record in the operator's `namespace`.
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        Self {
            map: SecretMap::new(client, namespace, SECRET_NAME),
            pending: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
        }
    }

    /// Records `owed` durably, then has them tried at once. Fails when the Secret could not be
    /// written (nothing is recorded then).
    pub async fn record(&self, owed: Vec<Owed>) -> Result<(), kube::Error> {
        let changes = owed
            .iter()
            .map(|o| (key(&o.lease), serde_json::to_string(o).ok()))
            .collect();
        self.map.write(changes).await?;
        self.add(owed);
        Ok(())
    }

    fn add(&self, owed: Vec<Owed>) {
        let now = Instant::now();
        let mut pending = self.pending.lock();
        for owed in owed {
            let entry = Pending {
                owed,
                failures: 0,
                next: now,
            };
            pending.insert(key(&entry.owed.lease), entry);
        }
        drop(pending);
        self.wake.notify_one();
    }

    /// The [`token_ref`]s of the tokens owed revocations need: those must not be released.
    pub fn tokens(&self) -> HashSet<String> {
        self.pending
            .lock()
            .values()
            .map(|p| p.owed.token.clone())
            .filter(|t| !t.is_empty())
            .collect()
    }

    /// Reads what an earlier leader left in the Secret.
    async fn load(&self) -> Result<(), kube::Error> {
        let owed = self
            .map
            .entries()
            .await?
            .into_values()
            .filter_map(|value| serde_json::from_str::<Owed>(&value).ok())
            .collect::<Vec<_>>();
        if !owed.is_empty() {
            tracing::info!(leases = owed.len(), "revocations owed by an earlier operator picked up");
        }
        self.add(owed);
        Ok(())
    }

    /// When the next attempt is due, if any is pending.
    fn next_due(&self) -> Option<Instant> {
        self.pending.lock().values().map(|p| p.next).min()
    }

    /// The entries due at `now`.
    fn due(&self, now: Instant) -> Vec<(String, Owed)> {
        let pending = self.pending.lock();
        pending
            .iter()
            .filter(|(_, p)| p.next <= now)
            .map(|(k, p)| (k.clone(), p.owed.clone()))
            .collect()
    }

    /// Tries every due entry once; the rest of an address waits when its Vault does not answer.
    async fn attempt_due(&self, ctx: &Context) {
        let now = Instant::now();
        let mut silent: HashSet<(String, Option<String>)> = HashSet::new();
        let mut done = BTreeMap::new();
        // The token of each reference, looked up once per round (a lookup may read a Secret).
        let mut tokens: HashMap<String, Option<String>> = HashMap::new();
        for (key, owed) in self.due(now) {
            let place = (owed.address.clone(), owed.namespace.clone());
            let outcome = if silent.contains(&place) {
                None
            } else {
                if !tokens.contains_key(&owed.token) {
                    tokens.insert(owed.token.clone(), token(ctx, &owed.token).await);
                }
                let token = tokens.get(&owed.token).cloned().flatten();
                Some(attempt(ctx, &owed, token).await)
            };
            match outcome {
                Some(Outcome::Revoked) => {
                    tracing::info!(
                        lease = owed.lease,
                        object = owed.object,
                        "revoked an owed lease of a deleted VaultSecret"
                    );
                }
                Some(Outcome::Moot(why)) => {
                    tracing::info!(
                        lease = owed.lease,
                        object = owed.object,
                        "owed revocation dropped: {why}"
                    );
                    ctx.metrics.lease_revocations.with_label_values(&["expired"]).inc();
                }
                Some(Outcome::Abandoned(why)) => abandon(ctx, &owed.lease, &owed.object, owed.expiry, &why),
                Some(Outcome::Later(e)) => {
                    tracing::warn!(lease = owed.lease, error = %e, "owed revocation not possible yet; will retry");
                    silent.insert(place);
                    self.postpone(&key, &owed);
                    continue;
                }
                None => {
                    self.postpone(&key, &owed);
                    continue;
                }
            }
            done.insert(key, None);
        }
        if done.is_empty() {
            return;
        }
        self.pending.lock().retain(|k, _| !done.contains_key(k));
        if let Err(e) = self.map.write(done).await {
            // Kept in the Secret: a later leader tries them again, and finds nothing to revoke.
            tracing::warn!(error = %e, "cannot remove settled entries from the owed revocations");
        }
    }

    /// The next try of `key`: backed off, never after the lease expires.
    fn postpone(&self, key: &str, owed: &Owed) {
        let mut pending = self.pending.lock();
        let Some(entry) = pending.get_mut(key) else { return };
        entry.failures += 1;
        let exp = FIRST_RETRY.saturating_mul(1 << entry.failures.saturating_sub(1).min(10));
        let left = owed.expiry.duration_since(Timestamp::now());
        let until_expiry = Duration::try_from(left).unwrap_or_default();
        entry.next = Instant::now() + exp.min(MAX_RETRY).min(until_expiry);
    }
}

/// The token whose [`token_ref`] is `reference`: the operator's own, or one this operator keeps.
async fn token(ctx: &Context, reference: &str) -> Option<String> {
    match ctx.settings.vault_token.clone().filter(|t| token_ref(t) == reference) {
        Some(own) => Some(own),
        None => ctx.vault.token_for(reference).await,
    }
}

/// Where to revoke `owed`: its address if still allowed, trusted with the CA recorded with it or
/// else as the operator trusts that address.
fn connection(settings: &crate::controller::Settings, owed: &Owed) -> Option<vault::Connection> {
    let mut conn = release::connection(settings, &owed.address, owed.namespace.clone())?;
    if let Some(ca) = &owed.ca {
        conn.ca_pem = Some(std::sync::Arc::from(ca.as_bytes()));
    }
    Some(conn)
}

/// One attempt at revoking `owed` with `token`, the one that issued it if still known.
async fn attempt(ctx: &Context, owed: &Owed, token: Option<String>) -> Outcome {
    if owed.expiry <= Timestamp::now() {
        return Outcome::Moot("the lease expired");
    }
    let Some(conn) = connection(&ctx.settings, owed) else {
        return Outcome::Abandoned(format!("its address {} is no longer allowed", owed.address));
    };
    let Some(token) = token else {
        return Outcome::Abandoned("the token that issued it is no longer kept".into());
    };
    let client = match vault::build_client(&conn, &token, ctx.settings.vault_timeout) {
        Ok(client) => client,
        Err(e) => return Outcome::Abandoned(e.to_string()),
    };
    match super::revoke::revoke(&client, &owed.lease, ctx).await {
        Ok(()) => Outcome::Revoked,
        Err(e) if e.is_outage() => Outcome::Later(e),
        Err(e @ vault::Error::PermissionDenied { .. }) => {
            // A token Vault no longer knows took its leases with it.
            let lookup = vaultrs::token::lookup_self(&client).await;
            match lookup.map_err(|l| vault::Error::from_client(l, &owed.address, "token lookup")) {
                Err(vault::Error::PermissionDenied { .. }) => {
                    Outcome::Moot("Vault revoked it with the token that issued it")
                }
                _ => Outcome::Abandoned(e.to_string()),
            }
        }
        Err(e) => Outcome::Abandoned(e.to_string()),
    }
}

/// Lease `lease` of deleted VaultSecret `object` given up: an error log line naming it, and the
/// metric.
pub fn abandon(ctx: &Context, lease: &str, object: &str, expiry: Timestamp, why: &str) {
    tracing::error!(
        lease,
        object,
        "abandoned a lease of deleted VaultSecret {object}: {why}; it stays valid until it expires at {expiry}"
    );
    ctx.metrics.lease_revocations.with_label_values(&["abandoned"]).inc();
}

/// Retries owed revocations until the task is aborted (it runs while this replica leads).
pub async fn run(ctx: Arc<Context>) {
    let owed = &ctx.owed;
    let mut delay = Duration::from_secs(1);
    while let Err(e) = owed.load().await {
        tracing::warn!(error = %e, "cannot read the owed revocations (Secret {SECRET_NAME}); retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RETRY);
    }
    loop {
        match owed.next_due() {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = owed.wake.notified() => {}
                }
            }
            None => owed.wake.notified().await,
        }
        owed.attempt_due(&ctx).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_plain_json_without_secrets_under_a_valid_key() {
        let owed = Owed {
            lease: "database/creds/app/AbC".into(),
            address: "https://bao:8200/".into(),
            namespace: None,
            ca: None,
            token: "0123456789abcdef".into(),
            expiry: "2026-12-07T10:00:00Z".parse().unwrap(),
            object: "shop/db".into(),
        };
        let text = serde_json::to_string(&owed).unwrap();
        assert_eq!(
            text,
            r#"{"lease":"database/creds/app/AbC","address":"https://bao:8200/","token":"0123456789abcdef","expiry":"2026-12-07T10:00:00Z","object":"shop/db"}"#
        );
        assert_eq!(serde_json::from_str::<Owed>(&text).unwrap(), owed);
        let k = key(&owed.lease);
        assert_eq!(k.len(), 24);
        assert!(k.chars().all(|c| c.is_ascii_hexdigit()), "{k}");
        assert_ne!(k, key("database/creds/app/AbD"));
    }

    #[test]
    fn a_retry_trusts_the_address_with_the_recorded_ca_and_only_an_allowed_address() {
        let settings = crate::controller::Settings {
            vault_address: Some(vault::parse_address("https://vault.example:8200").unwrap()),
            vault_ca_pem: Some(std::sync::Arc::from(&b"operator CA"[..])),
            allowed_vault_addresses: vec![vault::parse_address("https://team-vault.example:8200").unwrap()],
            ..crate::controller::Settings::for_tests()
        };
        let owed = |address: &str, ca: Option<&str>| Owed {
            lease: "pki/issue/web/1".into(),
            address: address.into(),
            namespace: Some("team".into()),
            ca: ca.map(Into::into),
            token: String::new(),
            expiry: "2026-12-07T10:00:00Z".parse().unwrap(),
            object: "shop/web".into(),
        };
        let team = "https://team-vault.example:8200/";
        let conn = connection(&settings, &owed(team, Some("team CA"))).unwrap();
        assert_eq!(conn.ca_pem.as_deref(), Some(&b"team CA"[..]));
        assert_eq!(conn.namespace.as_deref(), Some("team"));
        let conn = connection(&settings, &owed(team, None)).unwrap();
        assert_eq!(conn.ca_pem, None, "the system roots, as for any other address");
        let conn = connection(&settings, &owed("https://vault.example:8200/", None)).unwrap();
        assert_eq!(conn.ca_pem.as_deref(), Some(&b"operator CA"[..]));
        assert!(
            connection(&settings, &owed("https://elsewhere.example:8200/", Some("x"))).is_none(),
            "a recorded CA never makes an address allowed"
        );
    }
}

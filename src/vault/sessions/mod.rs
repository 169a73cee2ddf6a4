//! One authenticated client per identity, shared by every VaultSecret that uses it.
//!
//! - Concurrent users of an identity wait on one login instead of each logging in.
//! - A token is renewed (`renew-self`) at two thirds of its lifetime by a background task, as
//!   long as the identity was used since the last renewal (an idle identity's token is left to
//!   expire), and replaced by a fresh login on next use once renewal stops extending it (max
//!   TTL near) or it is not renewable. A use after two thirds that finds the token unrenewed
//!   renews it on the spot.
//! - Failed logins back off exponentially with jitter; callers in the meantime get the last
//!   error at once instead of hitting Vault again.
//! - [`Sessions::invalidate`] drops a token Vault refused (403), so the next use logs in anew.
//! - Tokens that own leases ([`Sessions::hold`]) are renewed while the leases live, used or not
//!   (Vault revokes a token's leases when it expires), and kept in a [`TokenStore`] so that a
//!   restarted operator picks them up instead of logging in anew.
//! - Once a token's end is known (renewal capped by its max TTL, or not renewable), it is
//!   reported ([`Sessions::notify_ending`], [`Sessions::token_end`]) so the leases it issued can
//!   be replaced in time.

mod ends;
mod release;
mod store;
mod token;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use tokio::sync::mpsc::UnboundedSender;
use vaultrs::client::VaultClient;

pub use ends::TokenEnd;
pub use store::{TokenStore, key as token_key, token_ref};

use ends::Ends;

use super::login::{self, Credential};
use super::{Connection, Error, Identity};
use crate::backoff::Backoff;
use crate::metrics::Metrics;
use crate::vault;
use token::{Plan, Session};

/// A token is considered gone this long before it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(3);

/// Identities not used for this long are forgotten (their tokens simply expire in Vault).
const IDLE_LIMIT: Duration = Duration::from_secs(3600);

/// Authenticated clients, one per (connection, identity).
pub struct Sessions {
    timeout: Duration,
    backoff: Backoff,
    metrics: Metrics,
    entries: Mutex<HashMap<(Connection, Identity), Arc<Entry>>>,
    store: Option<Arc<dyn TokenStore>>,
    ends: Arc<Ends>,
}

struct Entry {
    state: tokio::sync::Mutex<State>,
    last_used: Mutex<Option<Instant>>,
    /// Leases issued with this identity's token live until then: keep the token alive.
    held_until: Mutex<Option<Instant>>,
    /// [`store::key`] of the identity.
    key: String,
    /// [`store::legacy_key`] of the identity, to pick up a token an older operator kept.
    legacy_key: Option<String>,
    /// [`Identity::label`], for the token expiry metric.
    label: String,
    metrics: Metrics,
    ends: Arc<Ends>,
}

impl Entry {
    /// Publishes when the current token expires.
    fn report_expiry(&self, ttl: Option<Duration>) {
        if let Some(ttl) = ttl {
            let expires = jiff::Timestamp::now().as_second() as f64 + ttl.as_secs_f64();
            self.metrics
                .vault_token_expiry
                .with_label_values(&[&self.label])
                .set(expires);
        }
    }
}

#[derive(Default)]
struct State {
    session: Option<Session>,
    /// A background renewal task is scheduled for this entry.
    renewing: bool,
    failures: u32,
    /// After a failed login: no new attempt before this instant; callers get `last_error`.
    retry_at: Option<(Instant, Error)>,
    /// The [`TokenStore`] was asked for a token left by a previous operator.
    restore_tried: bool,
    /// [`token_ref`] of the token last written to the [`TokenStore`].
    saved: Option<String>,
    /// When a sync last held the token for its leases ([`Sessions::hold`]) or it was restored.
    held_at: Option<Instant>,
}

/// Keeps the current token usable if possible: `Some(outcome)` when the session can be used.
async fn refresh(entry: &Entry, state: &mut State, now: Instant) -> Option<Outcome> {
    let session = state.session.as_mut()?;
    match session.plan(now) {
        Plan::Use => return Some(Outcome::Cached),
        Plan::Renew(ttl) if session.renew(ttl, now, entry).await => {
            entry.ends.note(session);
            return Some(Outcome::Renewed);
        }
        Plan::Renew(_) | Plan::Login => entry.ends.note(session),
    }
    state.session = None;
    None
}

/// Renews the entry's token at two thirds of its lifetime while the identity is in use or holds
/// leases. Ends when the entry is forgotten, the token cannot be renewed any more, or nobody used
/// it since the last renewal and no lease needs it; the next use then logs in.
async fn renew_in_background(entry: Weak<Entry>) {
    loop {
        let wake = {
            let Some(entry) = entry.upgrade() else { return };
            let mut state = entry.state.lock().await;
            match state.session.as_ref().and_then(Session::renew_at) {
                Some(at) => at,
                None => {
                    tracing::debug!(
                        identity = entry.label,
                        "token cannot be renewed; background renewal stops"
                    );
                    state.renewing = false;
                    return;
                }
            }
        };
        tokio::time::sleep_until(wake.into()).await;
        let Some(entry) = entry.upgrade() else { return };
        let last_used = *entry.last_used.lock();
        let held_until = *entry.held_until.lock();
        let mut state = entry.state.lock().await;
        let now = Instant::now();
        let needed = |s: &Session| last_used.is_some_and(|t| t > s.issued) || held_until.is_some_and(|t| t > now);
        let keep = match state.session.as_mut() {
            Some(session) if needed(session) => {
                let keep = match session.plan(now) {
                    Plan::Use => true,
                    Plan::Renew(ttl) => session.renew(ttl, now, &entry).await,
                    Plan::Login => false,
                };
                entry.ends.note(session);
                keep && !session.capped
            }
            _ => false,
        };
        if !keep {
            tracing::debug!(identity = entry.label, "background token renewal stops");
            state.renewing = false;
            return;
        }
    }
}

/// What callers get: the shared client (hand it back to [`Sessions::invalidate`] on a 403).
#[derive(Clone)]
pub struct Handle {
    /// The authenticated client.
    pub client: Arc<VaultClient>,
    /// [`token_ref`] of its token.
    pub token_ref: String,
}

/// What happened to the token on a [`Sessions::get`], for metrics and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Cached,
    Renewed,
    /// Picked up from the [`TokenStore`] (left by a previous operator).
    Restored,
    LoggedIn,
}

impl Sessions {
    /// A pool whose requests time out after `timeout` and whose failed logins back off by `backoff`.
    pub fn new(timeout: Duration, backoff: Backoff, metrics: Metrics) -> Self {
        Self {
            timeout,
            backoff,
            metrics,
            entries: Mutex::new(HashMap::new()),
            store: None,
            ends: Arc::default(),
        }
    }

    /// Keeps tokens that own leases in `store`.
    pub fn with_store(mut self, store: Arc<dyn TokenStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Sends the [`token_ref`] of each token whose end becomes known to `tx`.
    pub fn notify_ending(&self, tx: UnboundedSender<String>) {
        *self.ends.notify.lock() = Some(tx);
    }

    /// The end of token `token_ref`, when known.
    pub fn token_end(&self, token_ref: &str) -> Option<TokenEnd> {
        self.ends.known.lock().get(token_ref).copied()
    }

    /// The client for `identity` at `conn`, logging in with the credential `credential` yields
    /// when there is no usable token. `credential` is only called when a login is needed.
    pub async fn get<E, F>(
        &self,
        conn: &Connection,
        identity: &Identity,
        credential: impl FnOnce() -> F,
    ) -> Result<(Handle, Outcome), E>
    where
        F: Future<Output = Result<Credential, E>>,
        E: From<Error>,
    {
        let entry = self.entry(conn, identity);
        let mut state = entry.state.lock().await;
        let now = Instant::now();
        if let Some(outcome) = refresh(&entry, &mut state, now).await
            && let Some(handle) = state.session.as_ref().map(Session::handle)
        {
            return Ok((handle, outcome));
        }
        if !state.restore_tried {
            state.restore_tried = true;
            if let Some(handle) = self.restore(&entry, &mut state, conn).await {
                return Ok((handle, Outcome::Restored));
            }
        }
        if let Some((at, err)) = &state.retry_at
            && now < *at
        {
            return Err(err.clone().into());
        }
        let credential = credential().await?;
        // A ready token (the operator's, or one from a Secret) involves no request to Vault.
        let login = if matches!(credential, Credential::Token(_)) {
            login::login(conn, credential, self.timeout).await
        } else {
            let login = vault::observe(&self.metrics, "login", login::login(conn, credential, self.timeout)).await;
            let result = if login.is_ok() { "success" } else { "failure" };
            self.metrics.vault_logins.with_label_values(&[result]).inc();
            login
        };
        match login {
            Ok(token) => {
                entry.report_expiry(token.ttl);
                let client = Arc::new(token.client);
                if let Some(accessor) = &token.accessor {
                    tracing::debug!(accessor, ttl = ?token.ttl, "logged in to Vault");
                }
                let session = Session {
                    token_ref: token_ref(&client.settings.token),
                    client,
                    issued: now,
                    ttl: token.ttl,
                    increment: token.increment,
                    renewable: token.renewable,
                    capped: false,
                };
                let handle = session.handle();
                entry.ends.note(&session);
                state.session = Some(session);
                state.failures = 0;
                state.retry_at = None;
                start_renewing(&entry, &mut state);
                Ok((handle, Outcome::LoggedIn))
            }
            Err(err) => {
                state.failures += 1;
                let delay = self.backoff.delay(state.failures, &mut rand::rng());
                state.retry_at = Some((now + delay, err.clone()));
                Err(err.into())
            }
        }
    }

    /// Drops the token of `handle` if it is still the current one (Vault refused it), so the
    /// next [`Sessions::get`] logs in again.
    pub async fn invalidate(&self, conn: &Connection, identity: &Identity, handle: &Handle) {
        let entry = self.entry(conn, identity);
        let mut state = entry.state.lock().await;
        if state
            .session
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(&s.client, &handle.client))
        {
            state.session = None;
        }
    }

    /// Forgets identities unused for an hour (a recreated ServiceAccount is a new identity).
    pub fn prune(&self) {
        let now = Instant::now();
        let mut entries = self.entries.lock();
        entries.retain(|_, e| {
            let last = *e.last_used.lock();
            let held = e.held_until.lock().is_some_and(|t| t > now);
            let keep = held || last.is_some_and(|t| now.duration_since(t) < IDLE_LIMIT);
            if !keep {
                let _ = self.metrics.vault_token_expiry.remove_label_values(&[&e.label]);
            }
            keep
        });
    }

    fn entry(&self, conn: &Connection, identity: &Identity) -> Arc<Entry> {
        let mut entries = self.entries.lock();
        let entry = entries
            .entry((conn.clone(), identity.clone()))
            .or_insert_with(|| {
                Arc::new(Entry {
                    state: Default::default(),
                    last_used: Mutex::new(None),
                    held_until: Mutex::new(None),
                    key: store::key(conn, identity),
                    legacy_key: store::legacy_key(conn, identity),
                    label: identity.label().to_owned(),
                    metrics: self.metrics.clone(),
                    ends: self.ends.clone(),
                })
            })
            .clone();
        *entry.last_used.lock() = Some(Instant::now());
        entry
    }
}

/// Starts the background renewal of the entry's token unless it runs or cannot help.
fn start_renewing(entry: &Arc<Entry>, state: &mut State) {
    let renewable = state.session.as_ref().is_some_and(|s| s.renew_at().is_some());
    if renewable && !state.renewing {
        state.renewing = true;
        tokio::spawn(renew_in_background(Arc::downgrade(entry)));
    }
}

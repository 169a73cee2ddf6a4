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

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use vaultrs::client::VaultClient;

use super::login::{self, Credential};
use super::{Connection, Error, Identity};
use crate::backoff::Backoff;
use crate::metrics::Metrics;
use crate::vault;

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
}

struct Entry {
    state: tokio::sync::Mutex<State>,
    last_used: Mutex<Option<Instant>>,
    /// [`Identity::label`], for the token expiry metric.
    label: String,
    metrics: Metrics,
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
}

struct Session {
    client: Arc<VaultClient>,
    issued: Instant,
    ttl: Option<Duration>,
    renewable: bool,
    /// Renewal returned less than asked: the max TTL is near, log in again next time.
    capped: bool,
}

/// Keeps the current token usable if possible: `Some(outcome)` when the session can be used.
async fn refresh(entry: &Entry, state: &mut State, now: Instant) -> Option<Outcome> {
    let session = state.session.as_mut()?;
    match session.plan(now) {
        Plan::Use => return Some(Outcome::Cached),
        Plan::Renew(ttl) if session.renew(ttl, now, entry).await => return Some(Outcome::Renewed),
        Plan::Renew(_) | Plan::Login => {}
    }
    state.session = None;
    None
}

/// Renews the entry's token at two thirds of its lifetime while the identity is in use. Ends when
/// the entry is forgotten, the token cannot be renewed any more, or nobody used it since the
/// last renewal; the next use then logs in.
async fn renew_in_background(entry: Weak<Entry>) {
    loop {
        let wake = {
            let Some(entry) = entry.upgrade() else { return };
            let mut state = entry.state.lock().await;
            match state.session.as_ref().and_then(Session::renew_at) {
                Some(at) => at,
                None => {
                    state.renewing = false;
                    return;
                }
            }
        };
        tokio::time::sleep_until(wake.into()).await;
        let Some(entry) = entry.upgrade() else { return };
        let last_used = *entry.last_used.lock().unwrap_or_else(|e| e.into_inner());
        let mut state = entry.state.lock().await;
        let now = Instant::now();
        let keep = match state.session.as_mut() {
            Some(session) if last_used.is_some_and(|t| t > session.issued) => match session.plan(now) {
                Plan::Use => true,
                Plan::Renew(ttl) => session.renew(ttl, now, &entry).await,
                Plan::Login => false,
            },
            _ => false,
        };
        if !keep {
            state.renewing = false;
            return;
        }
    }
}

/// What to do with a session before using it.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// Use the token as it is.
    Use,
    /// Renew it, asking for this lifetime.
    Renew(Duration),
    /// Log in again.
    Login,
}

impl Session {
    /// When the token should be renewed; `None` if it never will be.
    fn renew_at(&self) -> Option<Instant> {
        let ttl = self.ttl?;
        (self.renewable && !self.capped).then(|| self.issued + ttl.mul_f64(2.0 / 3.0))
    }

    /// Renews the token asking for `ttl`; whether it is still usable afterwards.
    async fn renew(&mut self, ttl: Duration, now: Instant, entry: &Entry) -> bool {
        match vault::observe(&entry.metrics, "renew", login::renew(&self.client, ttl)).await {
            Ok(granted) => {
                entry.report_expiry(Some(granted));
                tracing::debug!(granted = ?granted, "renewed Vault token");
                self.capped = granted < ttl.mul_f64(0.9);
                self.issued = now;
                self.ttl = Some(granted);
                granted > EXPIRY_MARGIN
            }
            Err(e) => {
                tracing::debug!(reason = e.reason(), "token renewal failed; logging in again");
                false
            }
        }
    }

    /// Use until two thirds of the lifetime, then renew while renewal still extends the token,
    /// else log in again; a token about to expire is never used.
    fn plan(&self, now: Instant) -> Plan {
        let Some(ttl) = self.ttl else { return Plan::Use };
        let usable = now + EXPIRY_MARGIN < self.issued + ttl;
        if usable && now < self.issued + ttl.mul_f64(2.0 / 3.0) {
            Plan::Use
        } else if usable && self.renewable && !self.capped {
            Plan::Renew(ttl)
        } else {
            Plan::Login
        }
    }
}

/// What callers get: the shared client (hand it back to [`Sessions::invalidate`] on a 403).
#[derive(Clone)]
pub struct Handle {
    /// The authenticated client.
    pub client: Arc<VaultClient>,
}

/// What happened to the token on a [`Sessions::get`], for metrics and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Cached,
    Renewed,
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
        }
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
        if let Some(outcome) = refresh(&entry, &mut state, now).await {
            let client = state.session.as_ref().map(|s| s.client.clone());
            if let Some(client) = client {
                return Ok((Handle { client }, outcome));
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
                state.session = Some(Session {
                    client: client.clone(),
                    issued: now,
                    ttl: token.ttl,
                    renewable: token.renewable,
                    capped: false,
                });
                state.failures = 0;
                state.retry_at = None;
                if token.ttl.is_some() && token.renewable && !state.renewing {
                    state.renewing = true;
                    tokio::spawn(renew_in_background(Arc::downgrade(&entry)));
                }
                Ok((Handle { client }, Outcome::LoggedIn))
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
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, e| {
            let last = *e.last_used.lock().unwrap_or_else(|e| e.into_inner());
            let keep = last.is_some_and(|t| now.duration_since(t) < IDLE_LIMIT);
            if !keep {
                let _ = self.metrics.vault_token_expiry.remove_label_values(&[&e.label]);
            }
            keep
        });
    }

    fn entry(&self, conn: &Connection, identity: &Identity) -> Arc<Entry> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries
            .entry((conn.clone(), identity.clone()))
            .or_insert_with(|| {
                Arc::new(Entry {
                    state: Default::default(),
                    last_used: Mutex::new(None),
                    label: identity.label(),
                    metrics: self.metrics.clone(),
                })
            })
            .clone();
        *entry.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(ttl: Option<u64>, renewable: bool, capped: bool, issued: Instant) -> Session {
        let conn = Connection {
            address: super::super::parse_address("http://127.0.0.1:1").unwrap(),
            namespace: None,
            ca_pem: None,
        };
        let client = super::super::client::build(&conn, "t", Duration::from_secs(1)).unwrap();
        Session {
            client: Arc::new(client),
            issued,
            ttl: ttl.map(Duration::from_secs),
            renewable,
            capped,
        }
    }

    #[test]
    fn a_token_is_used_until_two_thirds_then_renewed_then_replaced() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let fresh = session(Some(30), true, false, t0);
        assert_eq!(fresh.plan(at(19)), Plan::Use);
        assert_eq!(fresh.plan(at(21)), Plan::Renew(Duration::from_secs(30)));
        assert_eq!(fresh.plan(at(28)), Plan::Login, "too close to expiry to renew");
        assert_eq!(
            session(Some(30), false, false, t0).plan(at(21)),
            Plan::Login,
            "not renewable"
        );
        assert_eq!(
            session(Some(30), true, true, t0).plan(at(21)),
            Plan::Login,
            "max TTL reached"
        );
        assert_eq!(
            session(None, false, false, t0).plan(at(100_000)),
            Plan::Use,
            "tokens without TTL"
        );
    }
}

//! One token's life: when to use it, renew it, or log in again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vaultrs::client::VaultClient;

use super::{EXPIRY_MARGIN, Entry};

/// A token is still renewed this close to its expiry.
const RENEW_MARGIN: Duration = Duration::from_secs(1);
use crate::vault::{self, login};

/// The token an identity currently uses.
pub(super) struct Session {
    pub client: Arc<VaultClient>,
    /// Short hash of the token: names it in lease status without revealing it.
    pub token_ref: String,
    pub issued: Instant,
    pub ttl: Option<Duration>,
    /// Lifetime asked for at renewal when it differs from `ttl` (a token picked up after a
    /// restart has only the rest of its lifetime left, not the lifetime it is renewed by).
    pub increment: Option<Duration>,
    pub renewable: bool,
    /// Renewal returned less than asked: the max TTL is near. The token stays valid (its leases
    /// with it) until it expires, but the next use logs in again.
    pub capped: bool,
}

/// What to do with a session before using it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Plan {
    /// Use the token as it is.
    Use,
    /// Renew it, asking for this lifetime.
    Renew(Duration),
    /// Log in again.
    Login,
}

impl Session {
    /// What callers get.
    pub fn handle(&self) -> super::Handle {
        super::Handle {
            client: self.client.clone(),
            token_ref: self.token_ref.clone(),
        }
    }

    /// When the token should be renewed; `None` if it never will be.
    pub fn renew_at(&self) -> Option<Instant> {
        let ttl = self.ttl?;
        (self.renewable && !self.capped).then(|| self.issued + ttl.mul_f64(2.0 / 3.0))
    }

    /// When the token expires for good, once that is known (capped or not renewable).
    pub fn end(&self) -> Option<Instant> {
        let ttl = self.ttl?;
        (self.capped || !self.renewable).then(|| self.issued + ttl)
    }

    /// Renews the token asking for `ttl`; whether it is still usable afterwards.
    pub async fn renew(&mut self, ttl: Duration, now: Instant, entry: &Entry) -> bool {
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
    /// else log in again; a token about to expire, or whose max TTL is near, is not used for
    /// anything new.
    pub fn plan(&self, now: Instant) -> Plan {
        let Some(ttl) = self.ttl else { return Plan::Use };
        let expires = self.issued + ttl;
        let usable = now + EXPIRY_MARGIN < expires;
        // Renewing needs less room than a read: a short-lived token is renewed even when its
        // two-thirds point falls within the margin.
        let renewable = self.renewable && !self.capped && now + RENEW_MARGIN < expires;
        if usable && self.capped {
            Plan::Login
        } else if usable && now < self.issued + ttl.mul_f64(2.0 / 3.0) {
            Plan::Use
        } else if renewable {
            Plan::Renew(self.increment.unwrap_or(ttl))
        } else {
            Plan::Login
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::Connection;

    fn session(ttl: Option<u64>, renewable: bool, capped: bool, issued: Instant) -> Session {
        let conn = Connection {
            address: crate::vault::parse_address("http://127.0.0.1:1").unwrap(),
            namespace: None,
            ca_pem: None,
        };
        let client = crate::vault::client::build(&conn, "t", Duration::from_secs(1)).unwrap();
        Session {
            client: Arc::new(client),
            token_ref: "r".into(),
            issued,
            ttl: ttl.map(Duration::from_secs),
            increment: None,
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
        assert_eq!(
            fresh.plan(at(28)),
            Plan::Renew(Duration::from_secs(30)),
            "renewed, not used, near expiry"
        );
        assert_eq!(fresh.plan(at(29)), Plan::Login, "too close to expiry to renew");
        let short = session(Some(7), true, false, t0);
        assert_eq!(
            short.plan(t0 + Duration::from_millis(4700)),
            Plan::Renew(Duration::from_secs(7)),
            "a short-lived token is renewed at two thirds although that is within the margin"
        );
        assert_eq!(
            session(Some(30), false, false, t0).plan(at(21)),
            Plan::Login,
            "not renewable"
        );
        assert_eq!(
            session(Some(30), true, true, t0).plan(at(1)),
            Plan::Login,
            "max TTL reached: new work goes to a fresh token"
        );
        let mut restored = session(Some(10), true, false, t0);
        restored.increment = Some(Duration::from_secs(30));
        assert_eq!(
            restored.plan(at(8)),
            Plan::Renew(Duration::from_secs(30)),
            "a token picked up with 10 s left is renewed by the lifetime it was issued with"
        );
        assert_eq!(
            session(None, false, false, t0).plan(at(100_000)),
            Plan::Use,
            "tokens without TTL"
        );
    }

    #[test]
    fn the_end_of_a_token_is_known_once_it_cannot_be_extended() {
        let t0 = Instant::now();
        assert_eq!(session(Some(30), true, false, t0).end(), None);
        assert_eq!(
            session(Some(30), true, true, t0).end(),
            Some(t0 + Duration::from_secs(30))
        );
        assert_eq!(
            session(Some(30), false, false, t0).end(),
            Some(t0 + Duration::from_secs(30))
        );
        assert_eq!(session(None, false, false, t0).end(), None, "a token used as given");
    }
}

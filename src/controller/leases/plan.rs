//! What to do with a lease, and when: pure decisions, unit-tested without Vault.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rand::Rng;

use crate::api::{LeaseAction, LeaseStatus};

/// The step a sync takes for one leased source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The lease is valid and nothing is due: keep its credentials.
    Reuse,
    /// Extend the lease.
    Renew,
    /// Issue new credentials.
    Issue(Why),
}

/// Why new credentials are issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The source had no lease yet.
    First,
    /// The request changed (mount, path, parameters, role, connection).
    RequestChanged,
    /// The lease's credentials are not at hand (e.g. a crash after recording the lease and before
    /// keeping its data): the lease was never used and is revoked at once.
    Unused,
    /// The lease cannot be extended far enough: replace it before it expires.
    Rotate,
    /// The token that issued the lease ends before it (Vault would revoke it then).
    TokenEnding,
    /// The lease expired or Vault no longer knows it.
    Gone,
}

impl Why {
    /// A static name for Events and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Why::First => "first",
            Why::RequestChanged => "request changed",
            Why::Unused => "credentials not kept",
            Why::Rotate => "rotation",
            Why::TokenEnding => "issuing token expires",
            Why::Gone => "lease expired",
        }
    }
}

/// Decides the step for a source whose status says `lease`, asked with `request_hash`, whose
/// credentials are kept (`kept`) or not.
pub fn step(lease: Option<&LeaseStatus>, request_hash: &str, kept: bool, now: Timestamp) -> Step {
    let Some(lease) = lease else {
        return Step::Issue(Why::First);
    };
    if lease.request_hash != request_hash {
        return Step::Issue(Why::RequestChanged);
    }
    if !kept {
        return Step::Issue(Why::Unused);
    }
    if now >= lease.expiry.0 {
        return Step::Issue(Why::Gone);
    }
    if now < lease.next_action_time.0 {
        return Step::Reuse;
    }
    match lease.next_action {
        LeaseAction::Renew => Step::Renew,
        LeaseAction::Rotate => Step::Issue(Why::Rotate),
    }
}

/// The next action of a lease that was just issued or renewed and now lasts `remaining`:
/// renew (when renewable) or rotate at `fraction` of it, minus up to a tenth of that as jitter
/// so leases issued together spread out.
pub fn next_action(
    renewable: bool,
    remaining: Duration,
    fraction: f64,
    now: Timestamp,
    rng: &mut impl Rng,
) -> (LeaseAction, Timestamp) {
    let action = if renewable {
        LeaseAction::Renew
    } else {
        LeaseAction::Rotate
    };
    let delay = remaining.mul_f64(fraction * (1.0 - 0.1 * rng.random::<f64>()));
    (action, add(now, delay))
}

/// Whether a renewal granted less than asked: the lease's max TTL is near, so it must be
/// replaced rather than renewed again.
pub fn capped(asked: Duration, granted: Duration) -> bool {
    granted < asked
}

/// What Vault issued for a leased source.
pub struct Issued {
    pub lease_id: String,
    pub duration: Duration,
    pub renewable: bool,
    pub data: std::collections::BTreeMap<String, serde_json::Value>,
}

/// A new lease status for `issued`, asked with `request_hash` by token `token_ref`.
pub fn issued(
    issued: &Issued,
    request_hash: String,
    token_ref: String,
    fraction: f64,
    now: Timestamp,
    rng: &mut impl Rng,
) -> LeaseStatus {
    let (next_action, at) = next_action(issued.renewable, issued.duration, fraction, now, rng);
    LeaseStatus {
        id: issued.lease_id.clone(),
        issued: Time(now),
        expiry: Time(add(now, issued.duration)),
        duration_seconds: issued.duration.as_secs(),
        renewable: issued.renewable,
        request_hash,
        token_ref: Some(token_ref),
        next_action,
        next_action_time: Time(at),
    }
}

/// What the end of the token that issued a lease means for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenLimit {
    /// The lease ends before the token: nothing to do.
    None,
    /// Replace the lease now.
    RotateNow,
    /// Replace the lease at this time (earlier than planned).
    RotateAt(Timestamp),
}

/// Vault revokes a lease when the token that issued it expires. When the token's end (learnt
/// at `known`) comes before the lease's, the lease is replaced before the token ends, at a time
/// spread over the window by the lease ID so that the leases of one token do not all rotate at
/// once.
pub fn token_limit(lease: &LeaseStatus, known: Timestamp, end: Timestamp, now: Timestamp) -> TokenLimit {
    if lease.expiry.0 <= end {
        return TokenLimit::None;
    }
    let window = until(known, end);
    let latest = end - SignedDuration::try_from((window / 10).max(Duration::from_secs(3))).unwrap_or_default();
    let spread = f64::from(u16::from_be_bytes(sha_prefix(&lease.id))) / f64::from(u16::MAX);
    let at = add(known, until(known, latest).mul_f64(spread));
    if now >= at {
        TokenLimit::RotateNow
    } else if at < lease.next_action_time.0 || lease.next_action == LeaseAction::Renew {
        TokenLimit::RotateAt(at)
    } else {
        TokenLimit::None
    }
}

fn sha_prefix(text: &str) -> [u8; 2] {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    [digest[0], digest[1]]
}

/// `lease` after a renewal that granted `granted` from `now`.
pub fn renewed(
    lease: &LeaseStatus,
    granted: Duration,
    renewable: bool,
    fraction: f64,
    now: Timestamp,
    rng: &mut impl Rng,
) -> LeaseStatus {
    let (next_action, at) = next_action(renewable, granted, fraction, now, rng);
    LeaseStatus {
        expiry: Time(add(now, granted)),
        renewable,
        next_action,
        next_action_time: Time(at),
        ..lease.clone()
    }
}

/// `now + delay`, saturating.
pub fn add(now: Timestamp, delay: Duration) -> Timestamp {
    let delay = SignedDuration::try_from(delay).unwrap_or(SignedDuration::MAX);
    now.saturating_add(delay).unwrap_or(Timestamp::MAX)
}

/// Time from `now` until `at` (zero when past).
pub fn until(now: Timestamp, at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn lease(action: LeaseAction, at: i64, expiry: i64) -> LeaseStatus {
        LeaseStatus {
            id: "database/creds/app/x".into(),
            issued: Time(t(0)),
            expiry: Time(t(expiry)),
            duration_seconds: 10,
            renewable: true,
            request_hash: "h".into(),
            token_ref: Some("t".into()),
            next_action: action,
            next_action_time: Time(t(at)),
        }
    }

    #[test]
    fn a_lease_is_reused_until_its_action_is_due() {
        let l = lease(LeaseAction::Renew, 6, 10);
        assert_eq!(step(Some(&l), "h", true, t(5)), Step::Reuse);
        assert_eq!(step(Some(&l), "h", true, t(6)), Step::Renew);
        let l = lease(LeaseAction::Rotate, 6, 10);
        assert_eq!(step(Some(&l), "h", true, t(7)), Step::Issue(Why::Rotate));
    }

    #[test]
    fn new_credentials_are_issued_only_when_the_request_or_the_lease_requires_it() {
        let l = lease(LeaseAction::Renew, 6, 10);
        assert_eq!(step(None, "h", false, t(0)), Step::Issue(Why::First));
        assert_eq!(step(Some(&l), "other", true, t(1)), Step::Issue(Why::RequestChanged));
        assert_eq!(step(Some(&l), "h", false, t(1)), Step::Issue(Why::Unused));
        assert_eq!(step(Some(&l), "h", true, t(10)), Step::Issue(Why::Gone));
    }

    #[test]
    fn actions_fall_at_the_fraction_with_at_most_a_tenth_of_jitter_earlier() {
        let mut rng = rand::rng();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let (action, at) = next_action(true, Duration::from_secs(1000), 0.67, t(0), &mut rng);
            assert_eq!(action, LeaseAction::Renew);
            let delay = until(t(0), at).as_secs_f64();
            assert!((603.0..=670.0).contains(&delay), "{delay}");
            seen.insert(delay as u64);
        }
        assert!(seen.len() > 20, "jitter spreads leases: {seen:?}");
        let (action, _) = next_action(false, Duration::from_secs(10), 0.67, t(0), &mut rng);
        assert_eq!(
            action,
            LeaseAction::Rotate,
            "a lease that cannot be renewed is replaced"
        );
    }

    #[test]
    fn a_renewal_shorter_than_asked_means_the_max_ttl_is_near() {
        assert!(capped(Duration::from_secs(10), Duration::from_secs(6)));
        assert!(!capped(Duration::from_secs(10), Duration::from_secs(10)));
    }

    #[test]
    fn a_lease_that_outlives_its_token_is_replaced_before_the_token_ends_spread_over_the_window() {
        // Token end learnt at 100, token ends at 130; leases expire at 200.
        let mut times = std::collections::BTreeSet::new();
        for i in 0..50 {
            let mut l = lease(LeaseAction::Renew, 150, 200);
            l.id = format!("database/creds/app/{i}");
            match token_limit(&l, t(100), t(130), t(100)) {
                TokenLimit::RotateAt(at) => {
                    assert!(at >= t(100) && at <= t(127), "{at}");
                    times.insert(at.as_second());
                }
                TokenLimit::RotateNow => {
                    times.insert(100);
                }
                TokenLimit::None => panic!("a lease outliving its token must be replaced"),
            };
        }
        assert!(times.len() > 10, "rotations are spread: {times:?}");
        let l = lease(LeaseAction::Renew, 150, 200);
        assert_eq!(token_limit(&l, t(100), t(130), t(128)), TokenLimit::RotateNow);
        let short = lease(LeaseAction::Renew, 110, 120);
        assert_eq!(
            token_limit(&short, t(100), t(130), t(100)),
            TokenLimit::None,
            "ends before the token"
        );
    }

    #[test]
    fn renewal_moves_the_expiry_and_keeps_the_lease() {
        let l = lease(LeaseAction::Renew, 6, 10);
        let r = renewed(&l, Duration::from_secs(10), true, 0.67, t(6), &mut rand::rng());
        assert_eq!(r.id, l.id);
        assert_eq!(r.expiry, Time(t(16)));
        assert!(r.next_action_time.0 > t(6) && r.next_action_time.0 <= t(13));
    }
}

//! When to sync an object again. Refreshes fall on a grid: every `interval`, at a phase derived
//! from what the object reads and as whom, so VaultSecrets reading the same secrets with the same
//! identity come due together (their reads are coalesced into one Vault request) while unrelated
//! ones spread evenly over the interval. Retries use [`crate::backoff`].

use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;
use sha2::{Digest, Sha256};

use crate::api::VaultSecret;

/// The phase of `vs`'s refresh grid: the same for VaultSecrets with the same Vault connection,
/// identity and sources.
pub fn phase_seed(vs: &VaultSecret) -> u64 {
    let spec = &vs.spec;
    // Without spec.auth the identity is the operator's own, shared across namespaces.
    let namespace = spec.auth.as_ref().map(|_| vs.namespace().unwrap_or_default());
    let identity = serde_json::json!([namespace, spec.vault, spec.auth, spec.sources]);
    let digest = Sha256::digest(identity.to_string().as_bytes());
    u64::from_be_bytes(digest[..8].try_into().unwrap_or_default())
}

/// Time until the next refresh: the next point of the grid `seed` defines, at least a tenth of
/// the interval away (so at most 1.1 intervals).
pub fn refresh_delay(interval: Duration, seed: u64, now: Timestamp) -> Duration {
    let period = interval.as_millis().max(1);
    let phase = u128::from(seed) % period;
    let now_ms = u128::try_from(now.as_millisecond()).unwrap_or_default();
    let mut delay = (phase + period - now_ms % period) % period;
    if delay < period / 10 {
        delay += period;
    }
    Duration::from_millis(u64::try_from(delay).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(1_800_000_000_000 + ms).unwrap()
    }

    #[test]
    fn objects_with_the_same_seed_come_due_at_the_same_instant_whenever_they_synced() {
        let interval = Duration::from_secs(3600);
        let (a, b) = (at(0), at(1_234_567));
        let due_a = a + refresh_delay(interval, 42, a);
        let due_b = b + refresh_delay(interval, 42, b);
        let gap = (due_a.as_millisecond() - due_b.as_millisecond()).rem_euclid(3_600_000);
        assert_eq!(gap, 0, "{due_a} and {due_b} are not on one grid");
    }

    #[test]
    fn a_refresh_is_due_between_a_tenth_and_eleven_tenths_of_the_interval() {
        let interval = Duration::from_secs(3600);
        let mut phases = std::collections::HashSet::new();
        for seed in 0..500u64 {
            let seed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let delay = refresh_delay(interval, seed, at(0));
            assert!(delay >= interval / 10 && delay <= interval.mul_f64(1.1), "{delay:?}");
            phases.insert(delay.as_secs() / 60);
        }
        assert!(
            phases.len() > 40,
            "different seeds spread over the interval: {}",
            phases.len()
        );
    }
}

//! Exponential backoff with jitter, for failed syncs and failed logins.

use std::time::Duration;

use rand::Rng;

/// Retry backoff bounds.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// Delay after the first failure.
    pub base: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Backoff {
    /// Delay before retry number `failures` (1 = first failure): exponential, capped, with
    /// "equal jitter" (uniform in the upper half) so failing objects spread out.
    pub fn delay(&self, failures: u32, rng: &mut impl Rng) -> Duration {
        let exp = self.base.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        let ceiling = exp.min(self.max);
        let half = ceiling / 2;
        half + half.mul_f64(rng.random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_until_the_cap_and_stays_within_jitter_bounds() {
        let backoff = Backoff {
            base: Duration::from_secs(2),
            max: Duration::from_secs(60),
        };
        let mut rng = rand::rng();
        for (failures, ceiling) in [(1, 2), (2, 4), (3, 8), (5, 32), (6, 60), (40, 60)] {
            for _ in 0..200 {
                let d = backoff.delay(failures, &mut rng);
                let ceiling = Duration::from_secs(ceiling);
                assert!(
                    d >= ceiling / 2 && d <= ceiling,
                    "failure {failures}: {d:?} outside [{:?}, {ceiling:?}]",
                    ceiling / 2
                );
            }
        }
    }
}

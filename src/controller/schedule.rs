//! When to sync an object again: refresh deadlines with jitter (retries use [`crate::backoff`]).

use std::time::Duration;

use rand::Rng;

/// The refresh delay for `interval`: 90–100 % of it, so objects created together drift apart
/// without ever refreshing later than asked.
pub fn refresh_delay(interval: Duration, rng: &mut impl Rng) -> Duration {
    interval.mul_f64(1.0 - 0.1 * rng.random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_is_jittered_but_never_later_than_the_interval() {
        let interval = Duration::from_secs(3600);
        let mut rng = rand::rng();
        let delays: Vec<_> = (0..500).map(|_| refresh_delay(interval, &mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= interval && *d >= interval.mul_f64(0.9)));
        let distinct: std::collections::HashSet<_> = delays.iter().map(|d| d.as_secs()).collect();
        assert!(
            distinct.len() > 50,
            "jitter should spread objects: {} distinct seconds",
            distinct.len()
        );
    }
}

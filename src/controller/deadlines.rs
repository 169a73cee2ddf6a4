//! When each VaultSecret's next sync is due, as one heap of (time, shared key).
//!
//! kube's controller can keep these (`Action::requeue`), but its queue holds a DelayQueue slot, a
//! map entry and two copies of the object reference (four strings) per scheduled object: about
//! 0.6 KiB each, a fifth of the operator's heap at 10,000 (`docs/benchmarks.md`). Here an entry is
//! a time and a pointer to the key the tracker already holds. Rescheduling does not look for the
//! old entry: an entry whose time is no longer its key's is stale, skipped when it comes due, and
//! dropped when stale entries outnumber the keys.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Deadlines, earliest first.
pub struct Deadlines<K> {
    heap: BinaryHeap<Deadline<K>>,
}

impl<K> Default for Deadlines<K> {
    fn default() -> Self {
        Deadlines {
            heap: BinaryHeap::new(),
        }
    }
}

struct Deadline<K> {
    at: Instant,
    key: K,
}

// Ordered by time alone, reversed: `BinaryHeap` is a max-heap.
impl<K> Ord for Deadline<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        other.at.cmp(&self.at)
    }
}

impl<K> PartialOrd for Deadline<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> PartialEq for Deadline<K> {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl<K> Eq for Deadline<K> {}

impl<K> Deadlines<K> {
    /// Adds `key` due `at`; `true` when it is now the earliest. `current` says whether an entry
    /// still holds (its key is still due at that time); with `keys` live keys, stale entries are
    /// dropped once the heap is more than twice that.
    pub fn push(&mut self, key: K, at: Instant, keys: usize, current: impl Fn(&K, Instant) -> bool) -> bool {
        if self.heap.len() > 2 * keys + 64 {
            self.heap.retain(|d| current(&d.key, d.at));
        }
        let earliest = self.next().is_none_or(|next| at < next);
        self.heap.push(Deadline { at, key });
        earliest
    }

    /// When the earliest entry comes due (stale or not).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|d| d.at)
    }

    /// Removes the entries due at `now`, and returns the keys of those `current` holds.
    pub fn pop_due(&mut self, now: Instant, current: impl Fn(&K, Instant) -> bool) -> Vec<K> {
        let mut due = Vec::new();
        while self.next().is_some_and(|at| at <= now) {
            if let Some(d) = self.heap.pop()
                && current(&d.key, d.at)
            {
                due.push(d.key);
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn keys_come_due_in_time_order_and_a_rescheduled_key_only_at_its_new_time() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut current = std::collections::HashMap::from([("a", s(30)), ("b", s(10)), ("c", s(20))]);
        let mut d = Deadlines::default();
        assert!(d.push("a", s(30), 3, |_, _| true), "the first is the earliest");
        assert!(d.push("b", s(10), 3, |_, _| true));
        assert!(!d.push("c", s(20), 3, |_, _| true), "later than b");
        // a is rescheduled earlier: its old entry goes stale.
        current.insert("a", s(15));
        d.push("a", s(15), 3, |_, _| true);
        let holds = |k: &&str, at| current.get(k) == Some(&at);
        assert_eq!(d.pop_due(s(5), holds), Vec::<&str>::new());
        assert_eq!(d.pop_due(s(20), holds), ["b", "a", "c"]);
        assert_eq!(d.next(), Some(s(30)), "a's stale entry");
        assert_eq!(d.pop_due(s(40), holds), Vec::<&str>::new(), "skipped");
        assert_eq!(d.next(), None);
    }

    #[test]
    fn stale_entries_are_dropped_once_they_outnumber_the_keys() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        // One key rescheduled 1,000 times: only its latest entry holds.
        for n in 0..1_000u64 {
            let at = t0 + Duration::from_secs(n);
            d.push("a", at, 1, |_, entry_at| entry_at + Duration::from_secs(1) == at);
        }
        assert!(d.heap.len() <= 2 + 64 + 1, "{} entries for one key", d.heap.len());
    }
}

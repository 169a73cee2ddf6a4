//! Coalescing: the annotations waiting to be patched onto each workload, and when.
//!
//! Pure bookkeeping (no I/O, time passed in) so the timing rules are unit-tested.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;

use super::WorkloadRef;
use crate::api::VaultSecret;

/// One annotation waiting to be applied: the content hash, and the VaultSecret it comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct Contribution {
    pub hash: String,
    pub owner: ObjectRef<VaultSecret>,
}

/// Everything waiting for one workload: applied together, in one patch.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Annotation key → what to set it to.
    pub annotations: BTreeMap<String, Contribution>,
    first_seen: Instant,
    deadline: Instant,
    longest_wait: Duration,
}

/// Workloads with annotations waiting for their deadline.
#[derive(Default, Debug)]
pub struct Pending {
    batches: HashMap<WorkloadRef, Batch>,
}

impl Pending {
    /// Adds annotation `key` for `workload`, to be applied no sooner than `wait` from `now`.
    ///
    /// A change joining a batch already waiting pushes its deadline out to `now + wait`, but a
    /// batch never waits more than twice its longest `wait` after its first change, so a stream
    /// of changes cannot postpone a restart forever.
    pub fn add(&mut self, workload: WorkloadRef, key: String, change: Contribution, now: Instant, wait: Duration) {
        let batch = self.batches.entry(workload).or_insert_with(|| Batch {
            annotations: BTreeMap::new(),
            first_seen: now,
            deadline: now + wait,
            longest_wait: wait,
        });
        batch.annotations.insert(key, change);
        batch.longest_wait = batch.longest_wait.max(wait);
        let cap = batch.first_seen + batch.longest_wait * 2;
        batch.deadline = batch.deadline.max(now + wait).min(cap);
    }

    /// Withdraws what `owner` added; a workload left with nothing is no longer due.
    pub fn withdraw(&mut self, owner: &ObjectRef<VaultSecret>) {
        self.batches.retain(|_, batch| {
            batch.annotations.retain(|_, c| &c.owner != owner);
            !batch.annotations.is_empty()
        });
    }

    /// The earliest deadline, if anything is waiting.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.batches.values().map(|b| b.deadline).min()
    }

    /// Removes and returns the batches due at `now`.
    pub fn take_due(&mut self, now: Instant) -> Vec<(WorkloadRef, Batch)> {
        let due: Vec<WorkloadRef> = self
            .batches
            .iter()
            .filter(|(_, b)| b.deadline <= now)
            .map(|(w, _)| w.clone())
            .collect();
        due.into_iter()
            .filter_map(|w| self.batches.remove(&w).map(|b| (w, b)))
            .collect()
    }

    /// Number of workloads waiting.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    /// Whether nothing is waiting.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::api::WorkloadKind;

    const S: Duration = Duration::from_secs(1);

    fn web() -> WorkloadRef {
        WorkloadRef::new(WorkloadKind::Deployment, "shop", "web")
    }

    fn from(owner: &str, hash: &str) -> Contribution {
        Contribution {
            hash: hash.into(),
            owner: ObjectRef::new(owner).within("shop"),
        }
    }

    #[test]
    fn three_secrets_changing_within_the_window_make_one_batch() {
        let t0 = Instant::now();
        let mut pending = Pending::default();
        pending.add(web(), "a".into(), from("a", "h1"), t0, 5 * S);
        pending.add(web(), "b".into(), from("b", "h2"), t0 + S, 5 * S);
        pending.add(web(), "c".into(), from("c", "h3"), t0 + 2 * S, 5 * S);
        assert!(
            pending.take_due(t0 + 6 * S).is_empty(),
            "the last change extends the window"
        );
        let due = pending.take_due(t0 + 7 * S);
        assert_eq!(due.len(), 1);
        let keys: Vec<_> = due[0].1.annotations.keys().cloned().collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert!(pending.is_empty());
    }

    #[test]
    fn a_newer_hash_for_the_same_secret_replaces_the_waiting_one() {
        let t0 = Instant::now();
        let mut pending = Pending::default();
        pending.add(web(), "a".into(), from("a", "h1"), t0, S);
        pending.add(web(), "a".into(), from("a", "h2"), t0, S);
        let due = pending.take_due(t0 + S);
        assert_eq!(due[0].1.annotations["a"].hash, "h2");
    }

    #[test]
    fn a_stream_of_changes_cannot_postpone_the_restart_past_twice_the_window() {
        let t0 = Instant::now();
        let mut pending = Pending::default();
        for i in 0..100 {
            pending.add(web(), format!("k{i}"), from("x", "h"), t0 + S * i / 2, 4 * S);
        }
        assert_eq!(pending.next_deadline(), Some(t0 + 8 * S));
    }

    #[test]
    fn each_workload_has_its_own_deadline_and_zero_wait_is_due_at_once() {
        let t0 = Instant::now();
        let mut pending = Pending::default();
        let db = WorkloadRef::new(WorkloadKind::StatefulSet, "shop", "db");
        pending.add(web(), "a".into(), from("a", "h"), t0, 5 * S);
        pending.add(db.clone(), "a".into(), from("a", "h"), t0, Duration::ZERO);
        assert_eq!(pending.next_deadline(), Some(t0));
        let due = pending.take_due(t0);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, db);
        assert_eq!(pending.next_deadline(), Some(t0 + 5 * S));
    }

    #[test]
    fn withdrawing_an_owner_leaves_the_others() {
        let t0 = Instant::now();
        let mut pending = Pending::default();
        let db = WorkloadRef::new(WorkloadKind::StatefulSet, "shop", "db");
        pending.add(web(), "a".into(), from("a", "h"), t0, S);
        pending.add(web(), "b".into(), from("b", "h"), t0, S);
        pending.add(db, "a".into(), from("a", "h"), t0, S);
        pending.withdraw(&ObjectRef::new("a").within("shop"));
        assert_eq!(pending.len(), 1);
        let due = pending.take_due(t0 + S);
        assert_eq!(due[0].0, web());
        assert_eq!(due[0].1.annotations.keys().collect::<Vec<_>>(), ["b"]);
    }
}

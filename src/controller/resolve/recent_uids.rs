//! ServiceAccount UIDs read in the last second, so that a bulk of first syncs in one namespace
//! (10,000 VaultSecrets logging in as one ServiceAccount) does not read that ServiceAccount once
//! each: the benchmark counted 10,006 `GET serviceaccounts` for 10,000 first syncs before this.
//!
//! The UID is part of the identity, so that a ServiceAccount deleted and created again is a new
//! identity with a new login. A second is the longest a recreated one is still taken for the old
//! one. A missing ServiceAccount is not remembered: each sync asks again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How long a UID read is used for other syncs.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// UIDs by (namespace, ServiceAccount name), with when they were read.
#[derive(Default)]
pub struct RecentUids {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    seen: HashMap<(String, String), (String, Instant)>,
    /// When the stale entries were last dropped.
    pruned: Option<Instant>,
}

impl RecentUids {
    /// The UID of ServiceAccount `name` in `namespace` if it was read less than a second before
    /// `now`.
    pub fn get(&self, namespace: &str, name: &str, now: Instant) -> Option<String> {
        let state = self.state.lock();
        let (uid, at) = state.seen.get(&(namespace.to_owned(), name.to_owned()))?;
        (now.saturating_duration_since(*at) < FRESH_FOR).then(|| uid.clone())
    }

    /// Remembers the UID read at `now`; drops stale entries at most once a second.
    pub fn note(&self, namespace: &str, name: &str, uid: &str, now: Instant) {
        let mut state = self.state.lock();
        if state
            .pruned
            .is_none_or(|at| now.saturating_duration_since(at) >= FRESH_FOR)
        {
            state
                .seen
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < FRESH_FOR);
            state.pruned = Some(now);
        }
        state
            .seen
            .insert((namespace.to_owned(), name.to_owned()), (uid.to_owned(), now));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state.lock().seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uid_is_used_for_a_second_then_read_again() {
        let uids = RecentUids::default();
        let t0 = Instant::now();
        assert_eq!(uids.get("team", "app", t0), None, "nothing read yet");
        uids.note("team", "app", "uid-1", t0);
        assert_eq!(
            uids.get("team", "app", t0 + Duration::from_millis(999)).as_deref(),
            Some("uid-1")
        );
        assert_eq!(uids.get("other", "app", t0), None, "per namespace");
        assert_eq!(uids.get("team", "other", t0), None, "per ServiceAccount");
        assert_eq!(uids.get("team", "app", t0 + FRESH_FOR), None, "stale after a second");
    }

    #[test]
    fn stale_entries_are_dropped() {
        let uids = RecentUids::default();
        let t0 = Instant::now();
        for i in 0..100 {
            uids.note(&format!("ns-{i}"), "app", "uid", t0);
        }
        uids.note("late", "app", "uid", t0 + FRESH_FOR);
        assert_eq!(uids.len(), 1, "only the fresh entry is kept");
    }
}

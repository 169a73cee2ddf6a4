//! Fair turns for what the VaultSecret watch brings (issue 18): one namespace's bulk — 10,000
//! first syncs applied by a GitOps tool, a mass re-apply — never makes another namespace's new
//! VaultSecret wait behind it.
//!
//! The watch's VaultSecrets queue here, one FIFO per namespace, instead of in the controller's
//! own queue (which serves in arrival order, whoever they belong to). Turns go round-robin over the
//! namespaces that have something queued, and only as fast as syncs finish: [`Fair`] hands the
//! controller a VaultSecret only while fewer than `--concurrency` syncs run or wait to start, so
//! the backlog stays here, where its order is fair. Per namespace because the namespace is the
//! unit of tenancy: its own identities, its own team; a team cannot starve another by creating
//! more objects, and within a namespace the order stays the order of arrival.
//!
//! Scheduled refreshes and retries are the controller's own requeues and take no turn here: their
//! times are already spread (`schedule.rs`) and each costs at most one read.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use kube::runtime::reflector::ObjectRef;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::api::VaultSecret;

type Key = ObjectRef<VaultSecret>;

/// A handed-out turn whose sync has not started after this long is taken as never to start (its
/// VaultSecret was deleted before the controller got to it).
const START_WITHIN: Duration = Duration::from_secs(30);

/// One FIFO per namespace, served round-robin; a VaultSecret is queued at most once.
#[derive(Default)]
pub struct FairQueue {
    by_namespace: HashMap<String, VecDeque<Key>>,
    /// The namespaces with something queued, in the order of their next turn.
    turns: VecDeque<String>,
    queued: HashSet<Key>,
}

impl FairQueue {
    /// Queues `key` behind its namespace's earlier arrivals; nothing when already queued.
    pub fn push(&mut self, key: Key) {
        if !self.queued.insert(key.clone()) {
            return;
        }
        let namespace = key.namespace.clone().unwrap_or_default();
        let queue = self.by_namespace.entry(namespace.clone()).or_default();
        if queue.is_empty() {
            self.turns.push_back(namespace);
        }
        queue.push_back(key);
    }

    /// The next VaultSecret: the oldest of the namespace whose turn it is.
    pub fn pop(&mut self) -> Option<Key> {
        let namespace = self.turns.pop_front()?;
        let queue = self.by_namespace.get_mut(&namespace)?;
        let key = queue.pop_front()?;
        if queue.is_empty() {
            self.by_namespace.remove(&namespace);
        } else {
            self.turns.push_back(namespace);
        }
        self.queued.remove(&key);
        Some(key)
    }

    /// Drops `key` (deleted) from the queue.
    pub fn remove(&mut self, key: &Key) {
        if !self.queued.remove(key) {
            return;
        }
        let namespace = key.namespace.clone().unwrap_or_default();
        if let Some(queue) = self.by_namespace.get_mut(&namespace) {
            queue.retain(|k| k != key);
            if queue.is_empty() {
                self.by_namespace.remove(&namespace);
                self.turns.retain(|n| *n != namespace);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.queued.len()
    }
}

#[derive(Default)]
struct State {
    queue: FairQueue,
    /// Syncs running now.
    running: usize,
    /// Handed to the controller, not started yet, with when.
    handed: HashMap<Key, Instant>,
}

/// The fair queue between the VaultSecret watch and the controller (see the module docs).
pub struct Fair {
    state: Mutex<State>,
    /// Syncs running or handed out at most.
    limit: usize,
    wake: Notify,
}

impl Fair {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Fair {
            state: Mutex::default(),
            limit: limit.max(1),
            wake: Notify::new(),
        })
    }

    /// Queues a VaultSecret the watch brought.
    pub fn push(&self, key: Key) {
        self.state.lock().queue.push(key);
        self.wake.notify_one();
    }

    /// Forgets a deleted VaultSecret.
    pub fn remove(&self, key: &Key) {
        let mut state = self.state.lock();
        state.queue.remove(key);
        state.handed.remove(key);
    }

    /// A sync of `key` starts (whatever triggered it); the turn ends when the guard drops.
    pub fn started(self: &Arc<Self>, key: &Key) -> Running {
        let mut state = self.state.lock();
        state.handed.remove(key);
        state.running += 1;
        Running(self.clone())
    }

    /// The next VaultSecret to hand to the controller, if there is one and room for it.
    fn next(&self, now: Instant) -> Option<Key> {
        let mut state = self.state.lock();
        state
            .handed
            .retain(|_, at| now.saturating_duration_since(*at) < START_WITHIN);
        if state.running + state.handed.len() >= self.limit {
            return None;
        }
        let key = state.queue.pop()?;
        state.handed.insert(key.clone(), now);
        Some(key)
    }

    /// The VaultSecrets for the controller, in fair order and at the pace syncs finish.
    pub fn turns(self: Arc<Self>) -> impl Stream<Item = Key> + Send {
        futures::stream::unfold(self, async |fair| {
            loop {
                // Registered before looking, so a push or a finished sync in between still wakes.
                let woken = fair.wake.notified();
                if let Some(key) = fair.next(Instant::now()) {
                    drop(woken);
                    return Some((key, fair));
                }
                // A handed-out turn that never started frees its room after START_WITHIN.
                let _ = tokio::time::timeout(START_WITHIN, woken).await;
            }
        })
    }

    /// VaultSecrets waiting for a turn.
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.state.lock().queue.len()
    }
}

/// A running sync; dropping it frees its room.
pub struct Running(Arc<Fair>);

impl Drop for Running {
    fn drop(&mut self) {
        let mut state = self.0.state.lock();
        state.running = state.running.saturating_sub(1);
        drop(state);
        self.0.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    fn key(namespace: &str, name: &str) -> Key {
        ObjectRef::new(name).within(namespace)
    }

    fn names(keys: impl IntoIterator<Item = Key>) -> Vec<String> {
        keys.into_iter()
            .map(|k| format!("{}/{}", k.namespace.unwrap(), k.name))
            .collect()
    }

    #[test]
    fn namespaces_take_turns_and_each_keeps_its_order_of_arrival() {
        let mut queue = FairQueue::default();
        for i in 0..4 {
            queue.push(key("bulk", &format!("b{i}")));
        }
        queue.push(key("team", "new"));
        queue.push(key("bulk", "b1"));
        queue.push(key("other", "x"));
        assert_eq!(queue.len(), 6, "a VaultSecret is queued once");
        let order = names(std::iter::from_fn(|| queue.pop()));
        assert_eq!(
            order,
            ["bulk/b0", "team/new", "other/x", "bulk/b1", "bulk/b2", "bulk/b3"],
            "the newcomer goes second, not after the whole bulk"
        );
        assert_eq!(queue.pop(), None);
    }

    #[test]
    fn a_namespace_that_empties_and_fills_again_joins_the_back_of_the_turns() {
        let mut queue = FairQueue::default();
        queue.push(key("a", "1"));
        queue.push(key("b", "1"));
        queue.push(key("b", "2"));
        assert_eq!(names(queue.pop()), ["a/1"]);
        queue.push(key("a", "2"));
        queue.push(key("c", "1"));
        let order = names(std::iter::from_fn(|| queue.pop()));
        assert_eq!(order, ["b/1", "a/2", "c/1", "b/2"]);
    }

    #[test]
    fn a_removed_vaultsecret_is_not_served() {
        let mut queue = FairQueue::default();
        queue.push(key("a", "gone"));
        queue.push(key("b", "1"));
        queue.remove(&key("a", "gone"));
        queue.remove(&key("a", "never-queued"));
        assert_eq!(names(std::iter::from_fn(|| queue.pop())), ["b/1"]);
        queue.push(key("a", "gone"));
        assert_eq!(names(queue.pop()), ["a/gone"], "queued again after removal");
    }

    #[tokio::test(start_paused = true)]
    async fn turns_are_handed_out_only_while_there_is_room() {
        let fair = Fair::new(2);
        for i in 0..3 {
            fair.push(key("bulk", &format!("b{i}")));
        }
        fair.push(key("team", "new"));
        let mut turns = Box::pin(fair.clone().turns());
        let first = turns.next().await.unwrap();
        let second = turns.next().await.unwrap();
        assert_eq!(names([first.clone(), second.clone()]), ["bulk/b0", "team/new"]);
        // Two handed out: no third until one has run.
        let waiting = tokio::time::timeout(Duration::from_secs(1), turns.next()).await;
        assert!(waiting.is_err(), "a third turn with no room");
        let running = fair.started(&first);
        let _other = fair.started(&second);
        assert!(
            tokio::time::timeout(Duration::from_secs(1), turns.next())
                .await
                .is_err()
        );
        drop(running);
        assert_eq!(names(turns.next().await), ["bulk/b1"]);
        // A handed-out turn whose object never starts frees its room after a while.
        let _ = tokio::time::timeout(START_WITHIN * 2, turns.next()).await.unwrap();
        assert_eq!(fair.queued(), 0);
    }
}

//! Fair turns for what the VaultSecret watch brings (issue 18): one namespace's bulk — 10,000
//! first syncs applied by a GitOps tool, a mass re-apply — never makes another namespace's new
//! VaultSecret wait behind it.
//!
//! The watch's VaultSecrets queue here, by namespace, instead of in the controller's own queue
//! (which serves in arrival order, whoever they belong to). Turns go round-robin over the
//! namespaces that have something queued, and only as fast as syncs finish: [`Fair`] hands the
//! controller a VaultSecret only while fewer than `--concurrency` syncs run or wait to start, so
//! the backlog stays here, where its order is fair. Per namespace because the namespace is the
//! unit of tenancy: its own identities, its own team; a team cannot starve another by creating
//! more objects.
//!
//! Within a namespace, VaultSecrets that read the same ([`read_group`]) wait together, in the
//! order of their group's first arrival, and a turn hands out up to [`BATCH`] of one group: they
//! sync at the same moment and share one read, however their creates were interleaved.
//!
//! Scheduled refreshes and retries are the controller's own requeues and take no turn here: their
//! times are already spread (`schedule.rs`) and each costs at most one read.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use kube::runtime::reflector::ObjectRef;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::api::{SourceSpec, VaultSecret};
use crate::vault::kv::{Hold, Keep};

type Key = ObjectRef<VaultSecret>;

/// A handed-out turn whose sync has not started after this long is taken as never to start (its
/// VaultSecret was deleted before the controller got to it).
const START_WITHIN: Duration = Duration::from_secs(30);

/// Queued VaultSecrets that read the same: same namespace (so the same identities), connection,
/// auth and KV reads — [`read_group`].
pub type Group = u64;

/// What a VaultSecret reads, as a [`Group`]: its namespace, `spec.vault`, `spec.auth` and, per source, the
/// KV read (engine, mount, path, version) or the whole leased source. Equal groups make the same
/// Vault requests, so syncing them together shares each read ([`crate::vault::kv`]).
pub fn read_group(vs: &VaultSecret) -> Group {
    let sources: Vec<serde_json::Value> = vs
        .spec
        .sources
        .iter()
        .map(|source| match source.spec() {
            Some(SourceSpec::Kv(kv)) => serde_json::json!([kv.engine, kv.mount, kv.path, kv.version]),
            _ => serde_json::to_value(source).unwrap_or_default(),
        })
        .collect();
    hash_json(&serde_json::json!([
        vs.metadata.namespace,
        vs.spec.vault,
        vs.spec.auth,
        sources
    ]))
}

/// A hash of `what` as JSON text, for the in-process keys [`Group`] and [`Identity`].
fn hash_json(what: &serde_json::Value) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    what.to_string().hash(&mut hasher);
    hasher.finish()
}

/// Who a VaultSecret logs in to Vault as: its namespace, `spec.vault` and `spec.auth`.
pub type Identity = u64;

/// The [`Identity`] of `vs`; `None` for the operator's own, which needs no login.
pub fn identity(vs: &VaultSecret) -> Option<Identity> {
    let auth = vs.spec.auth.as_ref()?;
    Some(hash_json(&serde_json::json!([
        vs.metadata.namespace,
        vs.spec.vault,
        auth
    ])))
}

/// Most VaultSecrets of one group handed out in one turn of their namespace.
const BATCH: usize = 32;

/// What a turn of a group with an identity may do ([`FairQueue::pop`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum May {
    /// Sync: the identity is logged in.
    Sync,
    /// Sync one, which logs in first.
    LogIn,
    /// Nothing yet: its login is under way, or as many logins as allowed are.
    Wait,
}

/// A VaultSecret handed out by [`FairQueue::pop`]: its group, and the identity it logs in as when
/// its sync is that identity's first.
#[derive(Debug, PartialEq)]
pub struct Popped {
    pub key: Key,
    pub group: Group,
    pub login: Option<Identity>,
}

/// One namespace's queue: groups in the order of their first arrival, each a FIFO, and the
/// identity of each group.
#[derive(Default)]
struct Namespace {
    order: VecDeque<Group>,
    groups: HashMap<Group, VecDeque<Key>>,
    identities: HashMap<Group, Identity>,
}

/// The VaultSecrets waiting for a turn: namespaces take turns round-robin; a turn hands out the
/// namespace's oldest group, up to [`BATCH`] of it, so VaultSecrets that read the same are synced
/// together and share their reads. A namespace that had nothing queued takes its first turn before
/// the namespaces that are working through a backlog (as a new flow in FQ-CoDel): a team applying
/// one VaultSecret waits for one turn, not one turn of each of a thousand busy namespaces. A
/// group whose identity is not logged in yet gets a turn of one (the login) only when the caller
/// allows it ([`May`]); until then the namespaces behind it go first. A VaultSecret is queued at
/// most once.
#[derive(Default)]
pub struct FairQueue {
    namespaces: HashMap<String, Namespace>,
    /// Namespaces that had nothing queued, for their first turn, in order of arrival.
    fresh: VecDeque<String>,
    /// The other namespaces with something queued, in the order of their next turn (not the
    /// current one).
    turns: VecDeque<String>,
    /// The namespace whose turn it is, its group and how many it has had.
    current: Option<(String, Group, usize)>,
    queued: HashMap<Key, Group>,
    /// Members queued, by group.
    members: HashMap<Group, usize>,
}

impl FairQueue {
    /// Queues `key` (of group `group`) in its namespace: with its group if that is queued, else
    /// behind the namespace's other groups. Nothing when already queued.
    pub fn push(&mut self, key: Key, group: Group, identity: Option<Identity>) {
        if self.queued.contains_key(&key) {
            return;
        }
        self.queued.insert(key.clone(), group);
        *self.members.entry(group).or_default() += 1;
        let namespace = key.namespace.clone().unwrap_or_default();
        let is_current = self.current.as_ref().is_some_and(|(n, _, _)| *n == namespace);
        let queue = self.namespaces.entry(namespace.clone()).or_default();
        if queue.order.is_empty() && !is_current {
            self.fresh.push_back(namespace);
        }
        let members = queue.groups.entry(group).or_insert_with(|| {
            queue.order.push_back(group);
            VecDeque::new()
        });
        members.push_back(key);
        if let Some(identity) = identity {
            queue.identities.insert(group, identity);
        }
    }

    /// The next VaultSecret to sync; `may` tells what a group with an identity may do.
    pub fn pop(&mut self, may: impl Fn(Identity) -> May) -> Option<Popped> {
        if let Some((namespace, group, taken)) = self.current.take() {
            if taken < BATCH
                && let Some(key) = self.take(&namespace, group)
            {
                self.current = Some((namespace, group, taken + 1));
                return Some(Popped {
                    key,
                    group,
                    login: None,
                });
            }
            // The turn is over: the namespace queues for another if it has more.
            if self.namespaces.contains_key(&namespace) {
                self.turns.push_back(namespace);
            }
        }
        let (namespace, group, login) = self.next_turn(&may)?;
        let key = self.take(&namespace, group)?;
        if login.is_some() {
            // A turn of one: the rest of its group syncs once logged in.
            if self.namespaces.contains_key(&namespace) {
                self.turns.push_back(namespace);
            }
        } else {
            self.current = Some((namespace, group, 1));
        }
        Some(Popped { key, group, login })
    }

    /// The namespace whose turn is next, its oldest group and, when that group's first sync is
    /// a login, its identity: the first of the fresh namespaces, then of the others, whose
    /// oldest group may go.
    fn next_turn(&mut self, may: &impl Fn(Identity) -> May) -> Option<(String, Group, Option<Identity>)> {
        for fresh in [true, false] {
            let line = if fresh { &self.fresh } else { &self.turns };
            let found = line.iter().enumerate().find_map(|(i, namespace)| {
                let queue = self.namespaces.get(namespace)?;
                let group = *queue.order.front()?;
                match queue.identities.get(&group).map(|identity| (*identity, may(*identity))) {
                    None | Some((_, May::Sync)) => Some((i, group, None)),
                    Some((identity, May::LogIn)) => Some((i, group, Some(identity))),
                    Some((_, May::Wait)) => None,
                }
            });
            if let Some((i, group, login)) = found {
                let line = if fresh { &mut self.fresh } else { &mut self.turns };
                let namespace = line.remove(i)?;
                return Some((namespace, group, login));
            }
        }
        None
    }

    /// Takes the oldest member of `group` in `namespace`, dropping what it empties.
    fn take(&mut self, namespace: &str, group: Group) -> Option<Key> {
        let queue = self.namespaces.get_mut(namespace)?;
        let members = queue.groups.get_mut(&group)?;
        let key = members.pop_front()?;
        if members.is_empty() {
            queue.groups.remove(&group);
            queue.identities.remove(&group);
            queue.order.retain(|g| *g != group);
            if queue.order.is_empty() {
                self.namespaces.remove(namespace);
            }
        }
        self.unqueued(&key);
        Some(key)
    }

    /// Whether a VaultSecret of `group` is queued.
    pub fn has(&self, group: Group) -> bool {
        self.members.contains_key(&group)
    }

    /// Whether a VaultSecret of `namespace` is queued.
    pub fn has_namespace(&self, namespace: &str) -> bool {
        self.namespaces.contains_key(namespace)
    }

    fn unqueued(&mut self, key: &Key) -> Option<Group> {
        let group = self.queued.remove(key)?;
        // A drained bulk would leave the table at the bulk's size (1.7 MB at 10,000).
        let capacity = self.queued.capacity();
        if capacity > 64 && self.queued.len() * 4 < capacity {
            self.queued.shrink_to(self.queued.len() * 2);
        }
        if let Some(count) = self.members.get_mut(&group) {
            *count -= 1;
            if *count == 0 {
                self.members.remove(&group);
            }
        }
        Some(group)
    }

    /// Drops `key` (deleted) from the queue.
    pub fn remove(&mut self, key: &Key) {
        let Some(group) = self.unqueued(key) else {
            return;
        };
        let namespace = key.namespace.clone().unwrap_or_default();
        let Some(queue) = self.namespaces.get_mut(&namespace) else {
            return;
        };
        if let Some(members) = queue.groups.get_mut(&group) {
            members.retain(|k| k != key);
            if members.is_empty() {
                queue.groups.remove(&group);
                queue.identities.remove(&group);
                queue.order.retain(|g| *g != group);
            }
        }
        if queue.order.is_empty() {
            self.namespaces.remove(&namespace);
            self.turns.retain(|n| *n != namespace);
            self.fresh.retain(|n| *n != namespace);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.queued.len()
    }
}

/// Identities remembered as logged in at most; past this the memory starts again.
const KNOWN_MAX: usize = 100_000;

/// A namespace that had a VaultSecret arrive this recently is taken as still receiving a bulk: a
/// read is kept for first syncs that may follow even when nothing of it waits right now (turns
/// drain a namespace faster than a bulk spread over many namespaces arrives in each).
const ARRIVING: Duration = Duration::from_secs(15);

#[derive(Default)]
struct State {
    queue: FairQueue,
    /// Syncs running now.
    running: usize,
    /// Handed to the controller, not started yet.
    handed: HashMap<Key, Handed>,
    /// Members handed out or running, by group: a read they make is kept for the others.
    busy: HashMap<Group, usize>,
    /// Identities with a login turn handed out or running.
    logins: HashSet<Identity>,
    /// Identities a sync has succeeded with: logged in.
    known: HashSet<Identity>,
    /// When a VaultSecret of each namespace last arrived, for [`ARRIVING`]; pruned whenever it
    /// has doubled since the last pruning.
    arrivals: HashMap<String, Instant>,
    prune_at: usize,
}

/// A turn handed to the controller: when, of which group, and the identity it logs in as when it
/// is a login turn.
#[derive(Clone, Copy)]
struct Handed {
    at: Instant,
    group: Group,
    login: Option<Identity>,
}

impl State {
    /// A handed-out turn is over (its sync ended, or it never started).
    fn hand_back(&mut self, turn: Handed) {
        if let Some(identity) = turn.login {
            self.logins.remove(&identity);
        }
        if let Some(count) = self.busy.get_mut(&turn.group) {
            *count -= 1;
            if *count == 0 {
                self.busy.remove(&turn.group);
            }
        }
    }
}

/// The fair queue between the VaultSecret watch and the controller (see the module docs).
pub struct Fair {
    state: Mutex<State>,
    /// Syncs running or handed out at most.
    limit: usize,
    /// Of those, first syncs of an identity (logins) at most: the rest of the room stays for
    /// identities already logged in and the operator's own, so many teams' logins — twenty a
    /// second on a small machine — never make a newcomer wait behind all of them.
    login_limit: usize,
    wake: Notify,
}

impl Fair {
    pub fn new(limit: usize) -> Arc<Self> {
        let limit = limit.max(1);
        Arc::new(Fair {
            state: Mutex::default(),
            limit,
            login_limit: limit.div_ceil(2),
            wake: Notify::new(),
        })
    }

    /// Queues a VaultSecret the watch brought.
    pub fn push(&self, vs: &VaultSecret) {
        let key = super::key_of(vs);
        let now = Instant::now();
        let mut state = self.state.lock();
        match state.arrivals.get_mut(key.namespace.as_deref().unwrap_or_default()) {
            Some(at) => *at = now,
            None => {
                let namespace = key.namespace.clone().unwrap_or_default();
                state.arrivals.insert(namespace, now);
            }
        }
        if state.arrivals.len() > state.prune_at {
            (state.arrivals).retain(|_, at| now.saturating_duration_since(*at) < ARRIVING);
            state.prune_at = (state.arrivals.len() * 2).max(64);
        }
        state.queue.push(key, read_group(vs), identity(vs));
        drop(state);
        self.wake.notify_one();
    }

    /// Forgets a deleted VaultSecret.
    pub fn remove(&self, key: &Key) {
        let mut state = self.state.lock();
        state.queue.remove(key);
        if let Some(turn) = state.handed.remove(key) {
            state.hand_back(turn);
        }
    }

    /// A sync of `vs` succeeded: its identity is logged in.
    pub fn logged_in(&self, vs: &VaultSecret) {
        let Some(identity) = identity(vs) else {
            return;
        };
        let mut state = self.state.lock();
        if state.known.len() >= KNOWN_MAX {
            state.known.clear();
        }
        if state.known.insert(identity) {
            drop(state);
            self.wake.notify_one();
        }
    }

    /// Whether VaultSecrets that may read what `vs` reads wait for a turn or hold one — of its
    /// group (queued, handed out or syncing), or of its namespace while that namespace has a
    /// backlog (a bulk still arriving brings more of the group): a KV read `vs` makes is kept for
    /// them ([`crate::vault::kv`]). While the namespace only had VaultSecrets arrive in the last
    /// [`ARRIVING`], it is kept for first syncs only: a refresh due later never uses it.
    pub fn hold(self: &Arc<Self>, vs: &VaultSecret) -> Hold {
        let (fair, group) = (self.clone(), read_group(vs));
        let namespace = vs.metadata.namespace.clone().unwrap_or_default();
        Some(Arc::new(move || {
            let state = fair.state.lock();
            if state.queue.has(group) || state.busy.contains_key(&group) || state.queue.has_namespace(&namespace) {
                Keep::ForAll
            } else if (state.arrivals.get(&namespace)).is_some_and(|at| at.elapsed() < ARRIVING) {
                Keep::ForFirst
            } else {
                Keep::No
            }
        }))
    }

    /// A sync of `key` starts (whatever triggered it); the turn ends when the guard drops.
    pub fn started(self: &Arc<Self>, key: &Key) -> Running {
        let mut state = self.state.lock();
        let turn = state.handed.remove(key);
        state.running += 1;
        Running(self.clone(), turn)
    }

    /// The next VaultSecret to hand to the controller, if there is one and room for it.
    fn next(&self, now: Instant) -> Option<Key> {
        let mut state = self.state.lock();
        let state = &mut *state;
        let expired: Vec<Key> = (state.handed.iter())
            .filter(|(_, turn)| now.saturating_duration_since(turn.at) >= START_WITHIN)
            .map(|(key, _)| key.clone())
            .collect();
        for key in expired {
            if let Some(turn) = state.handed.remove(&key) {
                state.hand_back(turn);
            }
        }
        if state.running + state.handed.len() >= self.limit {
            return None;
        }
        let (known, logins) = (&state.known, &state.logins);
        let may = |identity| {
            if known.contains(&identity) {
                May::Sync
            } else if logins.contains(&identity) || logins.len() >= self.login_limit {
                May::Wait
            } else {
                May::LogIn
            }
        };
        let Popped { key, group, login } = state.queue.pop(may)?;
        if let Some(identity) = login {
            state.logins.insert(identity);
        }
        *state.busy.entry(group).or_default() += 1;
        // Handed out again before its sync started: the controller runs it once.
        if let Some(earlier) = state.handed.insert(key.clone(), Handed { at: now, group, login }) {
            state.hand_back(earlier);
        }
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

/// A running sync, and its turn when the fair queue handed it out; dropping it frees its room.
pub struct Running(Arc<Fair>, Option<Handed>);

impl Drop for Running {
    fn drop(&mut self) {
        let mut state = self.0.state.lock();
        state.running = state.running.saturating_sub(1);
        if let Some(turn) = self.1 {
            state.hand_back(turn);
        }
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

    fn pop(queue: &mut FairQueue) -> Option<Key> {
        queue.pop(|_| May::Sync).map(|p| p.key)
    }

    /// What `pop` hands out, without the group.
    fn turn(queue: &mut FairQueue, may: impl Fn(Identity) -> May) -> Option<(Key, Option<Identity>)> {
        queue.pop(may).map(|p| (p.key, p.login))
    }

    fn drain(queue: &mut FairQueue) -> Vec<String> {
        names(std::iter::from_fn(|| pop(queue)))
    }

    #[test]
    fn namespaces_take_turns_and_each_keeps_its_order_of_arrival() {
        let mut queue = FairQueue::default();
        for i in 0..4 {
            queue.push(key("bulk", &format!("b{i}")), i, None);
        }
        queue.push(key("team", "new"), 0, None);
        queue.push(key("bulk", "b1"), 1, None);
        queue.push(key("other", "x"), 0, None);
        assert_eq!(queue.len(), 6, "a VaultSecret is queued once");
        assert_eq!(
            drain(&mut queue),
            ["bulk/b0", "team/new", "other/x", "bulk/b1", "bulk/b2", "bulk/b3"],
            "the newcomer goes second, not after the whole bulk"
        );
        assert_eq!(pop(&mut queue), None);
    }

    #[test]
    fn a_turn_hands_out_a_group_together_up_to_a_batch() {
        let mut queue = FairQueue::default();
        // Arrivals alternate between two paths, as a bulk apply does.
        for i in 0..6 {
            queue.push(key("bulk", &format!("b{i}")), i % 2, None);
        }
        queue.push(key("team", "new"), 9, None);
        assert_eq!(
            drain(&mut queue),
            [
                "bulk/b0", "bulk/b2", "bulk/b4", "team/new", "bulk/b1", "bulk/b3", "bulk/b5"
            ],
            "one read each for the two groups"
        );
        // A group larger than a batch yields its namespace's turn after BATCH.
        for i in 0..BATCH + 2 {
            queue.push(key("bulk", &format!("big{i}")), 1, None);
        }
        queue.push(key("team", "late"), 9, None);
        let order = drain(&mut queue);
        assert_eq!(order[BATCH], "team/late");
        assert_eq!(order.len(), BATCH + 3);
    }

    #[test]
    fn a_namespace_with_nothing_queued_goes_before_the_busy_ones() {
        let mut queue = FairQueue::default();
        for ns in 0..100 {
            for i in 0..3 {
                queue.push(key(&format!("bulk-{ns}"), &format!("b{i}")), i, None);
            }
        }
        // Every bulk namespace has had a turn and still has a backlog.
        for _ in 0..100 {
            pop(&mut queue);
        }
        queue.push(key("team", "new"), 0, None);
        assert_eq!(
            names(pop(&mut queue)),
            ["team/new"],
            "not after a hundred busy namespaces"
        );
        // Back in line once served: it empties and is fresh again next time.
        queue.push(key("team", "next"), 0, None);
        assert_eq!(names(pop(&mut queue)), ["team/next"]);
        assert_eq!(queue.len(), 200);
    }

    #[test]
    fn a_namespace_that_empties_and_fills_again_joins_the_back_of_the_turns() {
        let mut queue = FairQueue::default();
        queue.push(key("a", "1"), 1, None);
        queue.push(key("b", "1"), 1, None);
        queue.push(key("b", "2"), 2, None);
        assert_eq!(names(pop(&mut queue)), ["a/1"]);
        // Arrives with another group while a's turn is open: a queues again when that turn
        // ends, behind b and c.
        queue.push(key("a", "2"), 2, None);
        queue.push(key("c", "1"), 1, None);
        assert_eq!(drain(&mut queue), ["b/1", "c/1", "a/2", "b/2"]);
    }

    #[test]
    fn a_removed_vaultsecret_is_not_served() {
        let mut queue = FairQueue::default();
        queue.push(key("a", "gone"), 1, None);
        queue.push(key("b", "1"), 1, None);
        queue.remove(&key("a", "gone"));
        queue.remove(&key("a", "never-queued"));
        assert!(!queue.has(1) || queue.len() == 1, "one left");
        assert_eq!(drain(&mut queue), ["b/1"]);
        assert!(!queue.has(1), "no member of group 1 queued");
        assert!(!queue.has_namespace("a") && !queue.has_namespace("b"));
        queue.push(key("c", "x"), 3, None);
        assert!(queue.has_namespace("c") && queue.has(3));
        assert_eq!(drain(&mut queue), ["c/x"]);
        queue.push(key("a", "gone"), 1, None);
        assert_eq!(names(pop(&mut queue)), ["a/gone"], "queued again after removal");
    }

    fn vaultsecret(spec: serde_json::Value) -> VaultSecret {
        VaultSecret::new("x", serde_json::from_value(spec).unwrap())
    }

    #[test]
    fn the_group_is_what_is_read_not_what_is_done_with_it() {
        let kv = |path: &str, extra: serde_json::Value| {
            let mut source = serde_json::json!({"mount": "secret", "path": path});
            source
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            serde_json::json!({"sources": [{"kv": source}]})
        };
        let plain = read_group(&vaultsecret(kv("app", serde_json::json!({}))));
        let mut renamed = kv("app", serde_json::json!({"prefix": "db_"}));
        renamed["destination"] = serde_json::json!({"name": "elsewhere"});
        assert_eq!(plain, read_group(&vaultsecret(renamed)));
        assert_ne!(plain, read_group(&vaultsecret(kv("other", serde_json::json!({})))));
        assert_ne!(
            plain,
            read_group(&vaultsecret(kv("app", serde_json::json!({"version": 2}))))
        );
        let mut with_auth = kv("app", serde_json::json!({}));
        with_auth["auth"] = serde_json::json!({"kubernetes": {"role": "r", "serviceAccountName": "a"}});
        assert_ne!(
            plain,
            read_group(&vaultsecret(with_auth)),
            "another identity reads apart"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn turns_are_handed_out_only_while_there_is_room() {
        let fair = Fair::new(2);
        let ns = |ns: &str, name: &str, path: &str| {
            let mut vs = vaultsecret(serde_json::json!({"sources": [{"kv": {"mount": "secret", "path": path}}]}));
            vs.metadata.name = Some(name.into());
            vs.metadata.namespace = Some(ns.into());
            vs
        };
        for i in 0..3 {
            fair.push(&ns("bulk", &format!("b{i}"), &format!("p{i}")));
        }
        fair.push(&ns("team", "new", "p"));
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

    #[test]
    fn a_group_not_logged_in_gets_a_turn_of_one_and_the_others_go_while_it_waits() {
        let mut queue = FairQueue::default();
        for i in 0..3 {
            queue.push(key("a", &format!("a{i}")), 1, Some(10));
            queue.push(key("b", &format!("b{i}")), 2, Some(20));
        }
        queue.push(key("team", "new"), 3, None);
        let only_a = |identity| if identity == 10 { May::LogIn } else { May::Wait };
        assert_eq!(turn(&mut queue, only_a), Some((key("a", "a0"), Some(10))), "a's login");
        assert_eq!(
            turn(&mut queue, |_| May::Wait),
            Some((key("team", "new"), None)),
            "the operator's identity needs no login: it goes past the waiting ones"
        );
        assert_eq!(turn(&mut queue, |_| May::Wait), None, "both wait for a login");
        let a_in = |identity| if identity == 10 { May::Sync } else { May::LogIn };
        let order: Vec<_> = std::iter::from_fn(|| turn(&mut queue, a_in)).collect();
        assert_eq!(
            order,
            [
                (key("b", "b0"), Some(20)),
                (key("a", "a1"), None),
                (key("a", "a2"), None),
                (key("b", "b1"), Some(20)),
                (key("b", "b2"), Some(20)),
            ],
            "b still fresh, so its login first; then a's rest in one turn"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn logins_take_at_most_half_the_room_and_a_logged_in_identity_syncs() {
        let fair = Fair::new(4);
        let vs = |ns: &str, name: &str, auth: bool| {
            let mut spec = serde_json::json!({"sources": [{"kv": {"mount": "secret", "path": "p"}}]});
            if auth {
                spec["auth"] = serde_json::json!({"kubernetes": {"role": "r", "serviceAccountName": "a"}});
            }
            let mut vs = vaultsecret(spec);
            vs.metadata.name = Some(name.into());
            vs.metadata.namespace = Some(ns.into());
            vs
        };
        for ns in ["t0", "t1", "t2"] {
            fair.push(&vs(ns, "x", true));
            fair.push(&vs(ns, "y", true));
        }
        fair.push(&vs("team", "new", false));
        let mut turns = Box::pin(fair.clone().turns());
        let mut next = async || {
            names(
                tokio::time::timeout(Duration::from_secs(1), turns.next())
                    .await
                    .ok()
                    .flatten(),
            )
        };
        assert_eq!(
            [next().await, next().await, next().await].concat(),
            ["t0/x", "t1/x", "team/new"]
        );
        assert!(
            next().await.is_empty(),
            "room for one more, but two logins run and t0, t1 wait for theirs"
        );
        let t0 = fair.started(&key("t0", "x"));
        fair.logged_in(&vs("t0", "x", true));
        drop(t0);
        assert_eq!(next().await, ["t2/x"], "a login ended: t2's, still fresh");
        let _t2 = fair.started(&key("t2", "x"));
        assert_eq!(next().await, ["t0/y"], "t0 is logged in");
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_is_kept_while_its_group_is_queued_handed_out_or_syncing() {
        let fair = Fair::new(8);
        let vs = |name: &str| {
            let mut vs = vaultsecret(serde_json::json!({"sources": [{"kv": {"mount": "secret", "path": "p"}}]}));
            vs.metadata.name = Some(name.into());
            vs.metadata.namespace = Some("team".into());
            vs
        };
        fair.push(&vs("a"));
        fair.push(&vs("b"));
        let hold = fair.hold(&vs("a")).unwrap();
        let mut turns = Box::pin(fair.clone().turns());
        let (a, b) = (turns.next().await.unwrap(), turns.next().await.unwrap());
        assert_eq!(hold(), Keep::ForAll, "both handed out, neither synced yet");
        let a = fair.started(&a);
        drop(a);
        let b = fair.started(&b);
        assert_eq!(hold(), Keep::ForAll, "b syncs");
        drop(b);
        assert_eq!(
            hold(),
            Keep::ForFirst,
            "none waits, but the namespace's VaultSecrets arrived just now: first syncs may follow"
        );
        tokio::time::advance(ARRIVING).await;
        assert_eq!(hold(), Keep::No, "nothing of the group left to read, none arriving");

        // Brought again and handed out twice before the controller ran it once.
        for _ in 0..2 {
            fair.push(&vs("a"));
            assert_eq!(names(turns.next().await), ["team/a"]);
        }
        drop(fair.started(&key("team", "a")));
        tokio::time::advance(ARRIVING).await;
        assert_eq!(hold(), Keep::No, "one run ends both turns");
        assert_eq!(fair.state.lock().handed.len(), 0);
    }
}

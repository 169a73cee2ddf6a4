//! Coalescing identical reads: callers asking for the same key while a read is in flight wait
//! for it and share its result instead of sending their own request.
//!
//! The first caller (the leader) performs the read in its own task; later callers subscribe to
//! a `watch` channel. If the leader is dropped mid-read, its entry is removed and a waiting
//! caller takes over. A success is kept for a short reuse window after completion, for callers
//! that arrive just after, then dropped by a timer — or, when the leader says callers are known to
//! be on their way ([`Hold`]), window after window while they are, never beyond [`MAX_HOLD`]. A
//! read kept only for callers that may still arrive ([`Keep::ForFirst`]) serves callers that have
//! never read before ([`Age::First`]); any other caller sends a new request, which replaces it.
//! The map holds only reads in flight or completed within that time. An error reaches every
//! caller that waited for it but is not kept: a caller that arrives later (a retry) sends a new
//! request.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use tokio::sync::watch;

use super::Result;

/// What every caller of one coalesced read gets.
pub(crate) type Shared<V> = Result<Arc<V>>;

/// Whether callers that will need a completed read are on their way: it is then kept for another
/// window.
pub type Hold = Option<Arc<dyn Fn() -> Keep + Send + Sync>>;

/// Who a completed read is kept for, past its reuse window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Nobody: it is dropped.
    No,
    /// Callers already waiting for their turn: every caller may use it.
    ForAll,
    /// Only callers that may still arrive: only [`Age::First`] callers may use it.
    ForFirst,
}

/// How recent a result a caller needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Age {
    /// A new read (someone asked for this sync).
    Fresh,
    /// A read completed within the reuse window, or kept for callers waiting ([`Keep::ForAll`]).
    Recent,
    /// A caller that never read before (a first sync): also a read kept for callers that may still
    /// arrive ([`Keep::ForFirst`]). It has no earlier value a slightly older one could go behind.
    First,
}

/// Longest a completed read is kept, however long callers are said to be on their way. A bulk
/// first sync of 10,000 with logins took 63–69 s on the benchmark machine; at 60 s, 85–124 of its
/// paths were read twice.
pub const MAX_HOLD: Duration = Duration::from_secs(120);

type Slots<K, V> = Mutex<Map<K, V>>;

/// Reads in flight (and successes within the reuse window), by key.
pub(crate) struct Coalescer<K, V> {
    window: Duration,
    slots: Arc<Slots<K, V>>,
}

struct Map<K, V> {
    next_id: u64,
    entries: HashMap<K, Entry<V>>,
}

struct Entry<V> {
    /// Tells a read apart from a later one under the same key, so a late timer or a dropped
    /// leader never removes its successor.
    id: u64,
    state: State<V>,
}

enum State<V> {
    InFlight(watch::Receiver<Option<Shared<V>>>),
    /// A success, and whether only [`Age::First`] callers may still use it.
    Done(Arc<V>, bool),
}

enum Join<V> {
    Done(Arc<V>),
    Wait(watch::Receiver<Option<Shared<V>>>),
    Lead(watch::Sender<Option<Shared<V>>>, u64),
}

impl<K, V> Coalescer<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Send + Sync + 'static,
{
    /// A coalescer that keeps a success for `window` after its read completes (zero: not at all).
    pub(crate) fn new(window: Duration) -> Self {
        Coalescer {
            window,
            slots: Arc::new(Mutex::new(Map {
                next_id: 0,
                entries: HashMap::new(),
            })),
        }
    }

    /// The result of `read` for `key`, shared with every caller asking for `key` meanwhile.
    #[cfg(test)]
    pub(crate) async fn get<F, Fut>(&self, key: K, read: F) -> Shared<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V>>,
    {
        self.get_held(key, read, Age::Recent, None).await
    }

    /// [`Coalescer::get`] for a caller that needs `age`, keeping a success while `hold` says more
    /// callers are on their way. ([`Age::Fresh`] is the caller's to handle: it does not come here.)
    pub(crate) async fn get_held<F, Fut>(&self, key: K, read: F, age: Age, hold: Hold) -> Shared<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V>>,
    {
        let (sender, id) = loop {
            match self.join(&key, age) {
                Join::Done(value) => return Ok(value),
                Join::Lead(sender, id) => break (sender, id),
                Join::Wait(mut receiver) => {
                    // An error: the leader was dropped before it finished; join again.
                    let shared = receiver.wait_for(Option::is_some).await.ok().and_then(|r| r.clone());
                    if let Some(result) = shared {
                        return result;
                    }
                }
            }
        };
        let mut leader = Leader {
            slots: &self.slots,
            key: &key,
            id,
            finished: false,
        };
        let result = read().await.map(Arc::new);
        leader.finish(&result, self.window, hold);
        sender.send_replace(Some(result.clone()));
        result
    }

    /// Number of keys held (reads in flight or within the reuse window).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.lock().entries.len()
    }

    fn join(&self, key: &K, age: Age) -> Join<V> {
        let mut map = self.slots.lock();
        match map.entries.get(key).map(|e| &e.state) {
            Some(State::Done(value, first_only)) if !first_only || age == Age::First => Join::Done(value.clone()),
            Some(State::InFlight(receiver)) => Join::Wait(receiver.clone()),
            // Nothing, or a read too old for this caller: a new read replaces it.
            _ => {
                let (sender, receiver) = watch::channel(None);
                let id = map.next_id;
                map.next_id += 1;
                map.entries.insert(
                    key.clone(),
                    Entry {
                        id,
                        state: State::InFlight(receiver),
                    },
                );
                Join::Lead(sender, id)
            }
        }
    }
}

/// The leading caller's claim on an entry; removes it if the caller is dropped mid-read.
struct Leader<'a, K: Eq + Hash, V> {
    slots: &'a Arc<Slots<K, V>>,
    key: &'a K,
    id: u64,
    finished: bool,
}

impl<K, V> Leader<'_, K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Send + Sync + 'static,
{
    /// Keeps a success for `window` — longer while `hold` says so (for whom it says), up to
    /// [`MAX_HOLD`] — removed by a timer; forgets an error at once.
    fn finish(&mut self, result: &Shared<V>, window: Duration, hold: Hold) {
        self.finished = true;
        let runtime = tokio::runtime::Handle::try_current();
        let mut map = self.slots.lock();
        let Some(entry) = map.entries.get_mut(self.key).filter(|e| e.id == self.id) else {
            return;
        };
        match (result, runtime) {
            (Ok(value), Ok(runtime)) if !window.is_zero() => {
                entry.state = State::Done(value.clone(), false);
                let (slots, key, id) = (Arc::downgrade(self.slots), self.key.clone(), self.id);
                runtime.spawn(async move {
                    let until = tokio::time::Instant::now() + MAX_HOLD;
                    loop {
                        tokio::time::sleep(window).await;
                        let keep = hold.as_ref().map_or(Keep::No, |keep| keep());
                        if keep == Keep::No || tokio::time::Instant::now() + window > until {
                            break;
                        }
                        if !set_first_only(&slots, &key, id, keep == Keep::ForFirst) {
                            return;
                        }
                    }
                    remove(&slots, &key, id);
                });
            }
            _ => {
                map.entries.remove(self.key);
            }
        }
    }
}

impl<K: Eq + Hash, V> Drop for Leader<'_, K, V> {
    fn drop(&mut self) {
        if !self.finished {
            remove(&Arc::downgrade(self.slots), self.key, self.id);
        }
    }
}

/// Says whether only [`Age::First`] callers may use `key`'s entry, if it is still read `id`
/// (false when it is not).
fn set_first_only<K: Eq + Hash, V>(slots: &Weak<Slots<K, V>>, key: &K, id: u64, first_only: bool) -> bool {
    let Some(slots) = slots.upgrade() else {
        return false;
    };
    let mut map = slots.lock();
    match map.entries.get_mut(key).filter(|e| e.id == id) {
        Some(Entry {
            state: State::Done(_, only),
            ..
        }) => {
            *only = first_only;
            true
        }
        _ => false,
    }
}

/// Removes `key`'s entry if it is still read `id`.
fn remove<K: Eq + Hash, V>(slots: &Weak<Slots<K, V>>, key: &K, id: u64) {
    if let Some(slots) = slots.upgrade() {
        let mut map = slots.lock();
        if map.entries.get(key).is_some_and(|e| e.id == id) {
            map.entries.remove(key);
        }
    }
}

#[cfg(test)]
mod tests;

//! What the controller remembers about each VaultSecret between reconciles — when its next sync
//! is due, its consecutive failures, the Secret version it last wrote, and which Vault tokens its
//! leases came from — in one owner, with one [`Tracker::forget`]. Small and in memory only.
//! [`Tracker::due`] hands out each VaultSecret when its next sync is due ([`super::deadlines`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::deadlines::Deadlines;
use super::owned::Seen;
use crate::SYNC_REQUESTED_ANNOTATION;
use crate::api::VaultSecret;

type Key = ObjectRef<VaultSecret>;

/// How long a Secret this operator wrote may stay unseen by the Secret watch before that counts
/// as a change (the watch lags writes; at 100,000 objects by more than a minute).
const UNSEEN_GRACE: Duration = Duration::from_secs(300);

/// Why a sync is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Never synced (since this process started), or forgotten.
    First,
    /// A new generation or sync request.
    Asked,
    /// The refresh deadline (or retry time) passed.
    Deadline,
    /// The Secret is not at the version last written: changed by someone else.
    SecretChanged,
    /// The Secret was deleted.
    SecretGone,
    /// The Secret was written long ago and the watch has still not seen it.
    SecretUnseen,
}

impl Due {
    pub fn as_str(self) -> &'static str {
        match self {
            Due::First => "first",
            Due::Asked => "asked",
            Due::Deadline => "deadline",
            Due::SecretChanged => "secret changed",
            Due::SecretGone => "secret deleted",
            Due::SecretUnseen => "secret unseen",
        }
    }
}

/// What a sync answers: the spec's generation and the last value of
/// [`SYNC_REQUESTED_ANNOTATION`]. A sync is due at once when either differs from the last sync's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Asked {
    pub generation: Option<i64>,
    pub sync_requested: Option<String>,
}

impl Asked {
    pub fn of(vs: &VaultSecret) -> Self {
        Asked {
            generation: vs.metadata.generation,
            sync_requested: vs
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(SYNC_REQUESTED_ANNOTATION))
                .cloned(),
        }
    }
}

/// Per-VaultSecret bookkeeping, shared by every reconcile.
#[derive(Default)]
pub struct Tracker {
    inner: Mutex<Inner>,
    /// Told when a deadline earlier than all others is set.
    earlier: Notify,
}

#[derive(Default)]
struct Inner {
    /// Keyed by a key shared with `deadlines`.
    objects: HashMap<Arc<Key>, State>,
    /// Each object's `next_sync` (entries of an older one are stale).
    deadlines: Deadlines<Arc<Key>>,
    /// The VaultSecrets holding leases issued by each Vault token (by token ref), to replace
    /// those leases when the token's end becomes known.
    tokens: HashMap<String, HashSet<Key>>,
}

/// What is remembered about one VaultSecret.
#[derive(Clone, Debug)]
struct State {
    /// What the last sync answered.
    asked: Asked,
    /// resourceVersion of the Secret as last written or read.
    secret_version: Option<String>,
    /// When `secret_version` was recorded.
    recorded: Instant,
    /// When the next sync is due (refresh deadline or retry).
    next_sync: Instant,
    /// Consecutive failed syncs.
    failures: u32,
    /// A sibling's change asks for a fresh read ([`super::siblings`]).
    nudged: bool,
}

/// Whether the deadline of `key` is still `at` (not rescheduled, nor forgotten).
fn holds(objects: &HashMap<Arc<Key>, State>, key: &Key, at: Instant) -> bool {
    objects.get(key).is_some_and(|s| s.next_sync == at)
}

impl Tracker {
    /// `Err` with the reason when a sync of `key` is due at `now` — never synced, a new
    /// generation or sync request (`asked`), the deadline passed, or its Secret is no longer at
    /// the version last written (`seen` says what the Secret watch has) — else how long until it
    /// is. A Secret the watch has not delivered yet is not a change, for [`UNSEEN_GRACE`].
    pub fn not_due(
        &self,
        key: &Key,
        asked: &Asked,
        seen: impl FnOnce() -> Seen,
        now: Instant,
    ) -> Result<Duration, Due> {
        let (next_sync, written, recorded) = {
            let inner = self.inner.lock();
            let state = inner.objects.get(key).ok_or(Due::First)?;
            if state.asked != *asked {
                return Err(Due::Asked);
            }
            if now >= state.next_sync {
                return Err(Due::Deadline);
            }
            (state.next_sync, state.secret_version.clone(), state.recorded)
        };
        if let Some(written) = written {
            match seen() {
                Seen::At(version) if version == written => {}
                Seen::At(_) => return Err(Due::SecretChanged),
                Seen::Gone => return Err(Due::SecretGone),
                Seen::NotYet if now.saturating_duration_since(recorded) >= UNSEEN_GRACE => {
                    return Err(Due::SecretUnseen);
                }
                Seen::NotYet => {}
            }
        }
        Ok(next_sync - now)
    }

    /// Whether `asked` carries a sync request `key` has not answered yet, or a sibling's change
    /// nudged it: either way the sync reads fresh.
    pub fn requested(&self, key: &Key, asked: &Asked) -> bool {
        let inner = self.inner.lock();
        let state = inner.objects.get(key);
        let answered = state.and_then(|s| s.asked.sync_requested.as_ref());
        state.is_some_and(|s| s.nudged) || (asked.sync_requested.is_some() && asked.sync_requested.as_ref() != answered)
    }

    /// Makes `key` due now with a fresh read; `false` for one never synced (it is due anyway).
    pub fn nudge(&self, key: &Key) -> bool {
        let mut inner = self.inner.lock();
        let Some(state) = inner.objects.get_mut(key) else {
            return false;
        };
        state.next_sync = Instant::now();
        state.nudged = true;
        true
    }

    /// Records a successful sync that answered `asked` and left the Secret at `secret_version`;
    /// the next is due at `next_sync`.
    pub fn succeeded(&self, key: Key, asked: Asked, secret_version: Option<String>, next_sync: Instant) {
        let state = State {
            asked,
            secret_version,
            recorded: Instant::now(),
            next_sync,
            failures: 0,
            nudged: false,
        };
        self.record(&mut self.inner.lock(), key, state);
    }

    /// Records a failed attempt to answer `asked` (a sync request is not repeated: the retry
    /// follows the backoff); `delay` gives the wait before the next from the number of
    /// consecutive failures, this one included; [`Tracker::due`] hands it out then. Returns that wait.
    pub fn failed(&self, key: Key, asked: Asked, delay: impl FnOnce(u32) -> Duration) -> Duration {
        let mut inner = self.inner.lock();
        let previous = inner.objects.get(&key);
        let failures = previous.map_or(0, |s| s.failures) + 1;
        let secret_version = previous.and_then(|s| s.secret_version.clone());
        let recorded = previous.map_or_else(Instant::now, |s| s.recorded);
        let wait = delay(failures);
        let state = State {
            asked,
            secret_version,
            recorded,
            next_sync: Instant::now() + wait,
            failures,
            nudged: false,
        };
        self.record(&mut inner, key, state);
        wait
    }

    /// Stores `state` of `key` and schedules its next sync.
    fn record(&self, inner: &mut Inner, key: Key, state: State) {
        let at = state.next_sync;
        let shared = match inner.objects.get_key_value(&key) {
            Some((shared, _)) => shared.clone(),
            None => Arc::new(key),
        };
        inner.objects.insert(shared.clone(), state);
        let Inner { objects, deadlines, .. } = inner;
        if deadlines.push(shared, at, objects.len(), |k, at| holds(objects, k, at)) {
            self.earlier.notify_one();
        }
    }

    /// The VaultSecrets whose next sync has come (scheduled by a success or a failure), as they
    /// come due; waits until one does.
    pub async fn due(&self) -> Vec<Key> {
        loop {
            let earlier = self.earlier.notified();
            let next = {
                let mut inner = self.inner.lock();
                let Inner { objects, deadlines, .. } = &mut *inner;
                let due = deadlines.pop_due(Instant::now(), |k, at| holds(objects, k, at));
                if !due.is_empty() {
                    return due.iter().map(|k| Key::clone(k)).collect();
                }
                deadlines.next()
            };
            match next {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at.into()) => {}
                        () = earlier => {}
                    }
                }
                None => earlier.await,
            }
        }
    }

    /// Consecutive failed syncs of `key` so far.
    pub fn failures(&self, key: &Key) -> u32 {
        self.inner.lock().objects.get(key).map_or(0, |s| s.failures)
    }

    /// The resourceVersion of the Secret of `key` as last written or read.
    pub fn secret_version(&self, key: &Key) -> Option<String> {
        self.inner
            .lock()
            .objects
            .get(key)
            .and_then(|s| s.secret_version.clone())
    }

    /// Remembers that the leases of `key` came from the Vault tokens `tokens` (and no others).
    pub fn index_tokens(&self, key: &Key, tokens: HashSet<String>) {
        let mut inner = self.inner.lock();
        inner.tokens.retain(|token, holders| {
            if !tokens.contains(token) {
                holders.remove(key);
            }
            !holders.is_empty()
        });
        for token in tokens {
            inner.tokens.entry(token).or_default().insert(key.clone());
        }
    }

    /// The VaultSecrets with leases from token `token_ref`, made due now.
    pub fn due_for_token(&self, token_ref: &str) -> Vec<Key> {
        let mut inner = self.inner.lock();
        let holders: Vec<Key> = inner
            .tokens
            .get(token_ref)
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default();
        let now = Instant::now();
        for key in &holders {
            if let Some(s) = inner.objects.get_mut(key) {
                s.next_sync = now;
            }
        }
        holders
    }

    /// Every VaultSecret something is remembered about.
    pub fn keys(&self) -> Vec<Key> {
        let inner = self.inner.lock();
        let holders = inner.tokens.values().flatten();
        let keys: HashSet<&Key> = inner.objects.keys().map(|k| &**k).chain(holders).collect();
        keys.into_iter().cloned().collect()
    }

    /// Drops everything remembered about `key`.
    pub fn forget(&self, key: &Key) {
        let mut inner = self.inner.lock();
        inner.objects.remove(key);
        inner.tokens.retain(|_, holders| {
            holders.remove(key);
            !holders.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        ObjectRef::new(name).within("ns")
    }

    fn at(version: &str) -> impl Fn() -> Seen {
        move || Seen::At(version.to_owned())
    }

    fn asked(generation: i64, requested: Option<&str>) -> Asked {
        Asked {
            generation: Some(generation),
            sync_requested: requested.map(str::to_owned),
        }
    }

    #[test]
    fn a_sync_is_due_on_a_new_generation_or_request_a_passed_deadline_or_a_changed_secret() {
        let tracker = Tracker::default();
        let now = Instant::now();
        let version = at("7");
        assert_eq!(
            tracker.not_due(&key("a"), &asked(1, None), &version, now),
            Err(Due::First)
        );
        tracker.succeeded(
            key("a"),
            asked(1, None),
            Some("7".into()),
            now + Duration::from_secs(60),
        );
        assert_eq!(
            tracker.not_due(&key("a"), &asked(1, None), &version, now),
            Ok(Duration::from_secs(60))
        );
        assert_eq!(
            tracker.not_due(&key("a"), &asked(2, None), &version, now),
            Err(Due::Asked),
            "new generation"
        );
        assert_eq!(
            tracker.not_due(&key("a"), &asked(1, Some("x")), &version, now),
            Err(Due::Asked),
            "a sync request"
        );
        assert!(tracker.requested(&key("a"), &asked(1, Some("x"))));
        assert!(!tracker.requested(&key("a"), &asked(1, None)));
        tracker.succeeded(
            key("a"),
            asked(1, Some("x")),
            Some("7".into()),
            now + Duration::from_secs(60),
        );
        assert_eq!(
            tracker.not_due(&key("a"), &asked(1, Some("x")), &version, now),
            Ok(Duration::from_secs(60)),
            "the same request is answered once"
        );
        assert!(!tracker.requested(&key("a"), &asked(1, Some("x"))), "answered");
        assert_eq!(
            tracker.not_due(&key("a"), &asked(1, Some("x")), at("8"), now),
            Err(Due::SecretChanged),
            "Secret changed by someone else"
        );
        assert_eq!(
            tracker.not_due(&key("a"), &asked(1, Some("x")), || Seen::Gone, now),
            Err(Due::SecretGone)
        );
        assert_eq!(
            tracker.not_due(&key("a"), &asked(1, Some("x")), &version, now + Duration::from_secs(61)),
            Err(Due::Deadline)
        );
    }

    #[test]
    fn a_secret_the_watch_has_not_delivered_yet_is_not_a_change_for_a_while() {
        let tracker = Tracker::default();
        let now = Instant::now();
        let day = Duration::from_secs(86_400);
        tracker.succeeded(key("a"), asked(1, None), Some("7".into()), now + day);
        assert_eq!(
            tracker.not_due(&key("a"), &asked(1, None), || Seen::NotYet, now),
            Ok(day),
            "the watch lags our own create"
        );
        let later = now + UNSEEN_GRACE + Duration::from_secs(1);
        assert_eq!(
            tracker.not_due(&key("a"), &asked(1, None), || Seen::NotYet, later),
            Err(Due::SecretUnseen)
        );
        // Nothing written (a failed first sync): nothing to compare.
        tracker.failed(key("b"), asked(1, None), |_| day);
        assert!(tracker.not_due(&key("b"), &asked(1, None), || Seen::Gone, now).is_ok());
    }

    #[test]
    fn failures_count_up_keep_the_secret_version_and_reset_on_success() {
        let tracker = Tracker::default();
        let now = Instant::now();
        tracker.succeeded(key("a"), asked(1, None), Some("7".into()), now);
        let waits: Vec<Duration> = (0..3)
            .map(|_| tracker.failed(key("a"), asked(1, None), |n| Duration::from_secs(u64::from(n))))
            .collect();
        assert_eq!(waits, [1, 2, 3].map(Duration::from_secs));
        assert_eq!(tracker.failures(&key("a")), 3);
        assert_eq!(tracker.secret_version(&key("a")).as_deref(), Some("7"));
        tracker.succeeded(key("a"), asked(1, None), Some("8".into()), now);
        assert_eq!(tracker.failures(&key("a")), 0);
    }

    #[tokio::test]
    async fn due_hands_out_each_key_at_its_latest_deadline_only() {
        let tracker = Tracker::default();
        let start = Instant::now();
        let ms = Duration::from_millis;
        tracker.succeeded(key("a"), Asked::default(), None, start + ms(400));
        tracker.succeeded(key("b"), Asked::default(), None, start + ms(200));
        // A failure reschedules `a` earlier: its 400-ms deadline goes stale.
        tracker.failed(key("a"), Asked::default(), |_| ms(50));
        let next = || tokio::time::timeout(Duration::from_secs(5), tracker.due());
        assert_eq!(next().await.ok(), Some(vec![key("a")]));
        assert!(start.elapsed() >= ms(50), "not before its deadline");
        assert_eq!(next().await.ok(), Some(vec![key("b")]));
        assert!(start.elapsed() >= ms(200));
        tracker.forget(&key("b"));
        let more = tokio::time::timeout(ms(600), tracker.due()).await;
        assert!(more.is_err(), "a's stale deadline is not handed out: {more:?}");
    }

    #[tokio::test]
    async fn a_deadline_earlier_than_the_awaited_one_wakes_the_waiter() {
        let tracker = Arc::new(Tracker::default());
        let start = Instant::now();
        tracker.succeeded(key("late"), Asked::default(), None, start + Duration::from_secs(3600));
        let waiter = tokio::spawn({
            let tracker = tracker.clone();
            async move { tracker.due().await }
        });
        tokio::task::yield_now().await;
        tracker.succeeded(key("soon"), Asked::default(), None, start + Duration::from_millis(20));
        let due = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert_eq!(due.ok().and_then(Result::ok), Some(vec![key("soon")]));
    }

    #[test]
    fn forget_drops_the_state_and_every_token_entry() {
        let tracker = Tracker::default();
        tracker.succeeded(
            key("a"),
            Asked::default(),
            None,
            Instant::now() + Duration::from_secs(60),
        );
        tracker.index_tokens(&key("a"), ["t1".to_owned(), "t2".to_owned()].into());
        tracker.index_tokens(&key("b"), ["t1".to_owned()].into());
        assert_eq!(tracker.due_for_token("t1").len(), 2);
        assert_eq!(
            tracker.not_due(&key("a"), &Asked::default(), || Seen::NotYet, Instant::now()),
            Err(Due::Deadline),
            "made due by its token"
        );
        tracker.forget(&key("a"));
        assert_eq!(tracker.due_for_token("t1"), vec![key("b")]);
        assert!(tracker.due_for_token("t2").is_empty());
        assert_eq!(tracker.keys(), vec![key("b")]);
    }
}

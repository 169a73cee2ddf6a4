//! The metadata of the Secrets vaultsync manages, as the metadata watch last saw it: what a sync
//! needs to prove a Secret current without reading it, and nothing else.
//!
//! A reflector store kept each Secret's whole `ObjectMeta` — about 1.4 KiB, mostly the two
//! label and annotation maps (a map node is ~540 bytes even for one entry) — 14 MiB at 10,000
//! Secrets (heaptrack, `docs/benchmarks.md`). Here an entry is its name, resourceVersion,
//! controller UID and its labels and annotations as exact-size sorted slices.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;

use super::scopes::{self, Scope};
use crate::MANAGED_BY_LABEL;

/// One managed Secret's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretMeta {
    resource_version: Option<String>,
    /// UID of the owner reference with `controller: true`.
    controller_uid: Option<String>,
    /// Sorted; without the managed-by label, which the watch selects on.
    labels: Box<[(String, String)]>,
    /// Sorted.
    annotations: Box<[(String, String)]>,
}

impl SecretMeta {
    fn of(meta: &PartialObjectMeta<Secret>) -> SecretMeta {
        let pairs = |map: &BTreeMap<String, String>, skip: Option<&str>| -> Box<[(String, String)]> {
            map.iter()
                .filter(|(k, _)| Some(k.as_str()) != skip)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        SecretMeta {
            resource_version: meta.resource_version(),
            controller_uid: meta
                .owner_references()
                .iter()
                .find(|o| o.controller == Some(true))
                .map(|o| o.uid.clone()),
            labels: pairs(meta.labels(), Some(MANAGED_BY_LABEL)),
            annotations: pairs(meta.annotations(), None),
        }
    }

    pub fn resource_version(&self) -> Option<&str> {
        self.resource_version.as_deref()
    }

    /// Whether the object with `uid` controls this Secret.
    pub fn controlled_by(&self, uid: Option<&str>) -> bool {
        uid.is_some() && self.controller_uid.as_deref() == uid
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        find(&self.annotations, key)
    }

    /// Whether every wanted label is set (the managed-by label is implied by the watch).
    pub fn has_labels(&self, want: Option<&BTreeMap<String, String>>) -> bool {
        want.into_iter()
            .flatten()
            .filter(|(k, _)| k.as_str() != MANAGED_BY_LABEL)
            .all(|(k, v)| find(&self.labels, k) == Some(v.as_str()))
    }

    /// Whether every wanted annotation is set.
    pub fn has_annotations(&self, want: Option<&BTreeMap<String, String>>) -> bool {
        want.into_iter()
            .flatten()
            .all(|(k, v)| find(&self.annotations, k) == Some(v.as_str()))
    }
}

fn find<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .binary_search_by(|(k, _)| k.as_str().cmp(key))
        .ok()
        .map(|i| pairs[i].1.as_str())
}

/// Namespace → name → metadata.
type Entries = HashMap<String, HashMap<String, SecretMeta>>;

/// What the watch says of one Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// It exists at this resourceVersion.
    At(String),
    /// It was seen deleted (or missing from a relist) and not seen again since.
    Gone,
    /// Never seen: not yet delivered by the watch (which lags the operator's own writes), or
    /// deleted long enough ago to be forgotten ([`OwnedSecrets::forget_gone`]).
    NotYet,
}

#[derive(Default)]
struct State {
    live: Entries,
    /// Secrets seen deleted, with when: `(namespace, name)`.
    gone: HashMap<(String, String), Instant>,
    /// Filled during a watch's relist, swapped in for its scope when it completes.
    relists: HashMap<Scope, Entries>,
}

/// The managed Secrets' metadata, fed by the metadata watch ([`OwnedSecrets::apply`]).
#[derive(Clone, Default)]
pub struct OwnedSecrets {
    state: Arc<RwLock<State>>,
}

impl OwnedSecrets {
    pub fn get(&self, namespace: &str, name: &str) -> Option<SecretMeta> {
        self.read().live.get(namespace)?.get(name).cloned()
    }

    /// What the watch says of Secret `name` in `namespace`: so a Secret not seen yet is not
    /// taken for one deleted.
    pub fn seen(&self, namespace: &str, name: &str) -> Seen {
        let state = self.read();
        if let Some(meta) = state.live.get(namespace).and_then(|names| names.get(name)) {
            return Seen::At(meta.resource_version().unwrap_or_default().to_owned());
        }
        if state.gone.contains_key(&(namespace.to_owned(), name.to_owned())) {
            return Seen::Gone;
        }
        Seen::NotYet
    }

    /// Forgets deletions seen longer than `after` ago. By then the deletion has made its owner
    /// sync (the watch's delete event triggers it).
    pub fn forget_gone(&self, after: Duration) {
        self.write().gone.retain(|_, at| at.elapsed() < after);
    }

    /// Secrets known.
    pub fn len(&self) -> usize {
        self.read().live.values().map(HashMap::len).sum()
    }

    /// Applies one event of the metadata watch of `scope`, as a reflector store would for that
    /// scope alone (a relist of one namespace replaces that namespace's entries only).
    pub fn apply(&self, scope: &Scope, event: &watcher::Event<PartialObjectMeta<Secret>>) {
        let mut state = self.write();
        let state = &mut *state;
        match event {
            watcher::Event::Apply(meta) => {
                state
                    .gone
                    .remove(&(meta.namespace().unwrap_or_default(), meta.name_any()));
                insert(&mut state.live, meta);
            }
            watcher::Event::Delete(meta) => {
                let namespace = meta.namespace().unwrap_or_default();
                if let Some(names) = state.live.get_mut(&namespace) {
                    names.remove(&meta.name_any());
                    if names.is_empty() {
                        state.live.remove(&namespace);
                    }
                }
                state.gone.insert((namespace, meta.name_any()), Instant::now());
            }
            watcher::Event::Init => {
                state.relists.insert(scope.clone(), Entries::new());
            }
            watcher::Event::InitApply(meta) => insert(state.relists.entry(scope.clone()).or_default(), meta),
            watcher::Event::InitDone => {
                let listed = state.relists.remove(scope).unwrap_or_default();
                // What the relist no longer has was deleted while the watch was away.
                let now = Instant::now();
                for (namespace, names) in &state.live {
                    if !scopes::contains(scope, namespace) {
                        continue;
                    }
                    let still = listed.get(namespace);
                    for name in names.keys().filter(|n| !still.is_some_and(|s| s.contains_key(*n))) {
                        state.gone.insert((namespace.clone(), name.clone()), now);
                    }
                }
                state
                    .gone
                    .retain(|(namespace, name), _| !listed.get(namespace).is_some_and(|n| n.contains_key(name)));
                state.live.retain(|namespace, _| !scopes::contains(scope, namespace));
                state.live.extend(listed);
            }
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read()
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write()
    }
}

fn insert(entries: &mut Entries, meta: &PartialObjectMeta<Secret>) {
    entries
        .entry(meta.namespace().unwrap_or_default())
        .or_default()
        .insert(meta.name_any(), SecretMeta::of(meta));
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::api::ObjectMeta;

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    fn secret(name: &str, version: &str) -> PartialObjectMeta<Secret> {
        PartialObjectMeta {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("team-a".into()),
                resource_version: Some(version.into()),
                labels: Some(map(&[(MANAGED_BY_LABEL, "vaultsync"), ("tier", "db")])),
                annotations: Some(map(&[("vaultsync.dev/applied-hash", "h1"), ("note", "x")])),
                owner_references: Some(vec![
                    OwnerReference {
                        uid: "other".into(),
                        ..OwnerReference::default()
                    },
                    OwnerReference {
                        uid: "vs-uid".into(),
                        controller: Some(true),
                        ..OwnerReference::default()
                    },
                ]),
                ..ObjectMeta::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn an_entry_answers_what_a_sync_asks() {
        let meta = SecretMeta::of(&secret("db", "7"));
        assert_eq!(meta.resource_version(), Some("7"));
        assert!(meta.controlled_by(Some("vs-uid")));
        assert!(!meta.controlled_by(Some("other")) && !meta.controlled_by(None));
        assert_eq!(meta.annotation("vaultsync.dev/applied-hash"), Some("h1"));
        assert_eq!(meta.annotation("absent"), None);
        let labels = map(&[(MANAGED_BY_LABEL, "vaultsync"), ("tier", "db")]);
        assert!(meta.has_labels(Some(&labels)) && meta.has_labels(None));
        assert!(!meta.has_labels(Some(&map(&[("tier", "web")]))));
        assert!(meta.has_annotations(Some(&map(&[("note", "x")]))));
        assert!(!meta.has_annotations(Some(&map(&[("note", "y")]))));
    }

    #[test]
    fn the_cache_follows_the_watch_and_a_relist_replaces_it_when_complete() {
        let cache = OwnedSecrets::default();
        let all = None;
        cache.apply(&all, &watcher::Event::Apply(secret("a", "1")));
        cache.apply(&all, &watcher::Event::Apply(secret("b", "1")));
        cache.apply(&all, &watcher::Event::Apply(secret("a", "2")));
        assert_eq!(cache.get("team-a", "a").unwrap().resource_version(), Some("2"));
        cache.apply(&all, &watcher::Event::Delete(secret("b", "1")));
        assert_eq!(cache.get("team-a", "b"), None);
        assert_eq!(cache.len(), 1);

        // During a relist the old entries answer; when it completes only the listed ones remain.
        cache.apply(&all, &watcher::Event::Init);
        cache.apply(&all, &watcher::Event::InitApply(secret("c", "5")));
        assert_eq!(cache.get("team-a", "a").unwrap().resource_version(), Some("2"));
        assert_eq!(cache.get("team-a", "c"), None);
        cache.apply(&all, &watcher::Event::InitDone);
        assert_eq!(cache.get("team-a", "a"), None);
        assert_eq!(cache.get("team-a", "c").unwrap().resource_version(), Some("5"));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_secret_not_seen_yet_is_told_from_one_deleted() {
        let cache = OwnedSecrets::default();
        let all = None;
        assert_eq!(cache.seen("team-a", "a"), Seen::NotYet);
        cache.apply(&all, &watcher::Event::Apply(secret("a", "1")));
        assert_eq!(cache.seen("team-a", "a"), Seen::At("1".into()));
        cache.apply(&all, &watcher::Event::Delete(secret("a", "1")));
        assert_eq!(cache.seen("team-a", "a"), Seen::Gone);
        cache.apply(&all, &watcher::Event::Apply(secret("a", "3")));
        assert_eq!(cache.seen("team-a", "a"), Seen::At("3".into()), "created again");

        // Deleted while the watch was away: missing from the relist.
        cache.apply(&all, &watcher::Event::Apply(secret("b", "4")));
        cache.apply(&all, &watcher::Event::Delete(secret("c", "2")));
        cache.apply(&all, &watcher::Event::Init);
        cache.apply(&all, &watcher::Event::InitApply(secret("a", "3")));
        cache.apply(&all, &watcher::Event::InitApply(secret("c", "5")));
        cache.apply(&all, &watcher::Event::InitDone);
        assert_eq!(cache.seen("team-a", "b"), Seen::Gone);
        assert_eq!(cache.seen("team-a", "c"), Seen::At("5".into()), "listed again");
        assert_eq!(cache.seen("team-b", "b"), Seen::NotYet);

        cache.forget_gone(Duration::ZERO);
        assert_eq!(cache.seen("team-a", "b"), Seen::NotYet, "forgotten");
    }

    #[test]
    fn a_relist_of_one_watched_namespace_replaces_that_namespace_only() {
        let cache = OwnedSecrets::default();
        let (a, b) = (Some("team-a".to_owned()), Some("team-b".to_owned()));
        let mut other = secret("x", "1");
        other.metadata.namespace = b.clone();
        cache.apply(&b, &watcher::Event::Apply(other));
        cache.apply(&a, &watcher::Event::Apply(secret("old", "1")));
        cache.apply(&a, &watcher::Event::Init);
        cache.apply(&a, &watcher::Event::InitApply(secret("new", "2")));
        cache.apply(&a, &watcher::Event::InitDone);
        assert_eq!(cache.get("team-a", "old"), None);
        assert!(cache.get("team-a", "new").is_some());
        assert!(
            cache.get("team-b", "x").is_some(),
            "another namespace's watch keeps its entries"
        );
    }
}

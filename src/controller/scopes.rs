//! Watching several namespaces (`--watch-namespaces a,b,c`): one watch per namespace — an
//! operator allowed only those namespaces cannot list cluster-wide — feeding one cache, so the
//! cache holds each object once whichever watch saw it.
//!
//! Each watch relists on its own: at start, and whenever its watch can no longer resume. A
//! reflector store replaces its whole content at the end of a relist, which would drop every
//! other namespace's objects, so [`Merge`] turns the watches' events into one cache's: the first
//! listing of every namespace becomes one listing (the cache is complete, and the operator ready,
//! only once every namespace has been listed), and each later relist of one namespace becomes
//! applies of what it lists and deletes of that namespace's cached objects it no longer lists.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;
use futures::stream::BoxStream;
use kube::runtime::reflector::Store;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher::watcher};
use kube::{Client, ResourceExt};

use super::packed::Packed;
use crate::api::VaultSecret;

/// A watch's scope: one namespace, or all of them (`None`).
pub type Scope = Option<String>;

/// The watches to run for `--watch-namespaces` (empty: one watch of all namespaces).
pub fn of(watch_namespaces: &[String]) -> Vec<Scope> {
    if watch_namespaces.is_empty() {
        vec![None]
    } else {
        watch_namespaces.iter().cloned().map(Some).collect()
    }
}

/// Whether `namespace` is within `scope`.
pub fn contains(scope: &Scope, namespace: &str) -> bool {
    scope.as_deref().is_none_or(|s| s == namespace)
}

/// Turns the events of one watch per [`Scope`] into the events of one cache.
pub struct Merge<K> {
    /// Scopes whose first listing is not complete yet.
    unlisted: HashSet<Scope>,
    /// The first listing of every scope, by (namespace, name), until all are listed.
    first: Option<HashMap<(String, String), K>>,
    /// The names (namespace, name) seen so far in a scope's relist.
    relisting: HashMap<Scope, HashSet<(String, String)>>,
}

fn key<K: ResourceExt>(object: &K) -> (String, String) {
    (object.namespace().unwrap_or_default(), object.name_any())
}

impl<K: ResourceExt> Merge<K> {
    pub fn new(scopes: &[Scope]) -> Self {
        Merge {
            unlisted: scopes.iter().cloned().collect(),
            first: Some(HashMap::new()),
            relisting: HashMap::new(),
        }
    }

    /// The cache's events for `event` of `scope`'s watch. `cached` gives the cached objects of a
    /// scope that are not among the given keys: those its relist no longer lists.
    pub fn event(
        &mut self,
        scope: &Scope,
        event: Event<K>,
        cached: impl FnOnce(&Scope, &HashSet<(String, String)>) -> Vec<K>,
    ) -> Vec<Event<K>> {
        let relisting = &mut self.relisting;
        match (&mut self.first, event) {
            (_, Event::Init) => {
                relisting.insert(scope.clone(), HashSet::new());
                Vec::new()
            }
            (Some(first), Event::InitApply(object) | Event::Apply(object)) => {
                let key = key(&object);
                if let Some(seen) = relisting.get_mut(scope) {
                    seen.insert(key.clone());
                }
                first.insert(key, object);
                Vec::new()
            }
            (Some(first), Event::Delete(object)) => {
                first.remove(&key(&object));
                Vec::new()
            }
            (Some(first), Event::InitDone) => {
                let seen = relisting.remove(scope).unwrap_or_default();
                first.retain(|k, _| !contains(scope, &k.0) || seen.contains(k));
                self.unlisted.remove(scope);
                if !self.unlisted.is_empty() {
                    return Vec::new();
                }
                let objects = self.first.take().unwrap_or_default().into_values();
                std::iter::once(Event::Init)
                    .chain(objects.map(Event::InitApply))
                    .chain(std::iter::once(Event::InitDone))
                    .collect()
            }
            (None, Event::InitApply(object)) => {
                if let Some(seen) = relisting.get_mut(scope) {
                    seen.insert(key(&object));
                }
                vec![Event::Apply(object)]
            }
            (None, event @ (Event::Apply(_) | Event::Delete(_))) => vec![event],
            (None, Event::InitDone) => {
                let seen = relisting.remove(scope).unwrap_or_default();
                cached(scope, &seen).into_iter().map(Event::Delete).collect()
            }
        }
    }
}

/// The events of one VaultSecret watch per scope, as one cache's ([`Merge`]), each VaultSecret
/// slimmed ([`super::slim`]) and packed ([`super::packed`]) as it arrives: a first listing is held
/// until every scope is listed, and held whole it cost a restarted operator 1.1 GiB at 100,000.
/// One scope's watch needs no merging and is passed through.
pub fn vaultsecret_events(
    client: &Client,
    scopes: &[Scope],
    store: Store<Packed>,
) -> BoxStream<'static, watcher::Result<watcher::Event<Packed>>> {
    let watch = |scope: &Scope| {
        watcher(
            super::scoped::<VaultSecret>(client.clone(), scope.as_deref()),
            watcher::Config::default().any_semantic(),
        )
        .default_backoff()
        .modify(super::slim::slim_vaultsecret)
        .filter_map(|event| {
            std::future::ready(match event {
                Ok(event) => super::packed::pack_event(event).map(Ok),
                Err(e) => Some(Err(e)),
            })
        })
    };
    if let [scope] = scopes {
        return watch(scope).boxed();
    }
    let watches = scopes.iter().map(|scope| {
        let scope = scope.clone();
        watch(&scope).map(move |event| (scope.clone(), event)).boxed()
    });
    let mut merge = Merge::new(scopes);
    futures::stream::select_all(watches)
        .flat_map(move |(scope, event)| {
            let events = match event {
                Ok(event) => merge
                    .event(&scope, event, |scope, seen| {
                        store
                            .state()
                            .iter()
                            .filter(|vs| {
                                let key = (vs.namespace().unwrap_or_default(), vs.name_any());
                                contains(scope, &key.0) && !seen.contains(&key)
                            })
                            .map(|vs| (**vs).clone())
                            .collect()
                    })
                    .into_iter()
                    .map(Ok)
                    .collect(),
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(events)
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    use super::*;

    fn object(namespace: &str, name: &str, version: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                resource_version: Some(version.into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    fn names(events: &[Event<ConfigMap>]) -> Vec<String> {
        let mut names: Vec<String> = events
            .iter()
            .map(|e| match e {
                Event::Init => "init".into(),
                Event::InitApply(o) => format!("list {}/{}", o.namespace().unwrap(), o.name_any()),
                Event::Apply(o) => format!("apply {}/{}", o.namespace().unwrap(), o.name_any()),
                Event::Delete(o) => format!("delete {}/{}", o.namespace().unwrap(), o.name_any()),
                Event::InitDone => "done".into(),
            })
            .collect();
        names.sort();
        names
    }

    fn none(_: &Scope, _: &HashSet<(String, String)>) -> Vec<ConfigMap> {
        Vec::new()
    }

    #[test]
    fn the_first_listings_of_all_namespaces_are_one_listing_with_what_happened_meanwhile() {
        let scopes = of(&["a".into(), "b".into()]);
        let (a, b) = (&scopes[0], &scopes[1]);
        let mut merge = Merge::new(&scopes);
        for (scope, event) in [
            (a, Event::Init),
            (a, Event::InitApply(object("a", "x", "1"))),
            (a, Event::InitApply(object("a", "gone", "1"))),
            (b, Event::Init),
            (a, Event::InitDone),
            // Namespace a is watched while b is still listed.
            (a, Event::Apply(object("a", "new", "2"))),
            (a, Event::Delete(object("a", "gone", "1"))),
            (b, Event::InitApply(object("b", "y", "1"))),
        ] {
            assert!(
                merge.event(scope, event, none).is_empty(),
                "nothing before all are listed"
            );
        }
        let events = merge.event(b, Event::InitDone, none);
        assert_eq!(names(&events), ["done", "init", "list a/new", "list a/x", "list b/y"]);
        assert!(matches!(events.first(), Some(Event::Init)));
        assert!(matches!(events.last(), Some(Event::InitDone)));
    }

    #[test]
    fn a_later_relist_of_one_namespace_touches_only_that_namespace() {
        let scopes = of(&["a".into(), "b".into()]);
        let (a, b) = (&scopes[0], &scopes[1]);
        let mut merge = Merge::new(&scopes);
        for scope in [a, b] {
            merge.event(scope, Event::Init, none);
            merge.event(scope, Event::InitDone, none);
        }
        assert_eq!(
            names(&merge.event(b, Event::Apply(object("b", "y", "3")), none)),
            ["apply b/y"]
        );
        assert!(merge.event(a, Event::Init, none).is_empty());
        assert_eq!(
            names(&merge.event(a, Event::InitApply(object("a", "kept", "4")), none)),
            ["apply a/kept"]
        );
        // The cache asks which of a's objects the relist did not list: a/removed.
        let cache = [
            object("a", "kept", "4"),
            object("a", "removed", "1"),
            object("b", "y", "3"),
        ];
        let done = merge.event(a, Event::InitDone, |scope, seen| {
            cache
                .iter()
                .filter(|o| contains(scope, &o.namespace().unwrap()) && !seen.contains(&key(*o)))
                .cloned()
                .collect()
        });
        assert_eq!(names(&done), ["delete a/removed"], "never a reset of the whole cache");
    }

    #[test]
    fn one_watch_of_all_namespaces_is_one_scope() {
        let scopes = of(&[]);
        assert_eq!(scopes, [None]);
        assert!(contains(&scopes[0], "any"));
        assert!(!contains(&Some("a".into()), "b"));
        // One scope's watch is not merged: `vaultsecret_events` passes it through.
    }
}

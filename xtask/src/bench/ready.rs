//! When each benchmark VaultSecret first became Ready, from one watch over all namespaces.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::runtime::watcher::{self, Event};

use super::cluster::{LABEL, vault_secret_resource};

/// `namespace/name` → the instant the watch first saw it with `Ready=True`.
#[derive(Clone, Default)]
pub struct ReadyTracker {
    seen: Arc<Mutex<HashMap<String, Instant>>>,
}

impl ReadyTracker {
    /// Starts watching labelled VaultSecrets in all namespaces; the watch ends when the returned
    /// guard is dropped.
    pub fn start(client: &Client) -> (ReadyTracker, WatchGuard) {
        let tracker = ReadyTracker::default();
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &vault_secret_resource());
        let seen = tracker.clone();
        let task = tokio::spawn(async move {
            let mut events = watcher::watcher(api, watcher::Config::default().labels(LABEL)).boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(Event::Apply(obj) | Event::InitApply(obj)) => seen.observe(&obj),
                    Ok(_) => {}
                    Err(err) => eprintln!("bench: watch error (retrying): {err}"),
                }
            }
        });
        (tracker, WatchGuard(task))
    }

    fn observe(&self, obj: &DynamicObject) {
        if !is_ready(obj) {
            return;
        }
        let key = format!(
            "{}/{}",
            obj.metadata.namespace.as_deref().unwrap_or_default(),
            obj.metadata.name.as_deref().unwrap_or_default()
        );
        self.lock().entry(key).or_insert_with(Instant::now);
    }

    /// How many VaultSecrets in namespaces starting with `prefix` are Ready, and when the last of
    /// them became Ready.
    pub fn count(&self, prefix: &str) -> (usize, Option<Instant>) {
        let seen = self.lock();
        let matching = seen.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, t)| *t);
        let count = matching.clone().count();
        (count, matching.max())
    }

    /// When `key` (`namespace/name`) became Ready.
    pub fn ready_at(&self, key: &str) -> Option<Instant> {
        self.lock().get(key).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Stops the watch when dropped.
pub struct WatchGuard(tokio::task::JoinHandle<()>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn is_ready(obj: &DynamicObject) -> bool {
    obj.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

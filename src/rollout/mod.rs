//! Rolling restarts of the workloads that use a Secret whose content changed.
//!
//! A restart sets one pod-template annotation per Secret, `vaultsync.dev/secret.<name>`, to the
//! Secret's keyed content hash (`status.secretHash`): the same content never restarts a workload
//! twice, and a workload fed by several Secrets has a key for each. Changes reaching one workload
//! within the debounce window are applied in one patch, so they make one rollout.
//!
//! The controller asks for restarts ([`Rollouts::request`]) only after a change of content it
//! recorded in `status.pendingRolloutHash`; a background task waits out the debounce, patches,
//! emits Events, and hands a [`Report`] back through the controller's trigger stream, so that
//! status is only ever written by the reconciler.

mod annotation;
mod debounce;
mod driver;
mod references;
mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use futures::channel::mpsc;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::reflector::ObjectRef;

pub use annotation::{KEY_PREFIX, OPT_OUT_ANNOTATION, key_for};
pub use references::uses_secret;

use crate::api::{Rollout, VaultSecret, VaultSecretStatus, WorkloadKind};
use crate::backoff::Backoff;
use crate::reasons::rollout;

/// A workload, by kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadRef {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
}

impl WorkloadRef {
    pub fn new(kind: WorkloadKind, namespace: &str, name: &str) -> Self {
        Self {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl std::fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.name)
    }
}

/// Why a workload could not be restarted: a static reason (for conditions, Events and metric
/// labels) and a message for people. Neither ever holds a secret value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: &'static str,
    pub message: String,
}

impl Failure {
    pub fn new(reason: &'static str, message: String) -> Self {
        Self { reason, message }
    }

    /// Classifies a failed API call made to `action`.
    pub fn from_kube(err: kube::Error, action: &str) -> Self {
        match err {
            kube::Error::Api(s) if s.code == 403 => Failure::new(
                rollout::FORBIDDEN,
                format!("the operator may not {action} (403 Forbidden): see config/rbac/role.yaml"),
            ),
            kube::Error::Api(s) if s.code == 404 => {
                Failure::new(rollout::TARGET_NOT_FOUND, format!("{action}: not found"))
            }
            e => Failure::new(
                rollout::KUBERNETES_ERROR,
                format!(
                    "Kubernetes API error during {action}: {}",
                    crate::kube_error_message(&e)
                ),
            ),
        }
    }
}

/// What one VaultSecret asks to restart, for one content hash. Two requests with equal targets
/// are the same request.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// The VaultSecret's (and every workload's) namespace.
    pub namespace: String,
    /// The destination Secret.
    pub secret: String,
    /// The Secret's content hash (`status.secretHash`): the annotation's value.
    pub hash: String,
    /// `spec.rollout`.
    pub spec: Rollout,
    /// How long to wait for other changes before patching.
    pub debounce: Duration,
}

/// A request to restart the workloads of one VaultSecret.
#[derive(Clone, Debug)]
pub struct Request {
    /// The VaultSecret.
    pub owner: ObjectRef<VaultSecret>,
    /// The VaultSecret, for Events.
    pub regarding: ObjectReference,
    pub target: Target,
}

/// What restarting one workload came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Its pod template now carries the current hash (patched now or earlier).
    Done,
    /// It could not be restarted (it may have been patched, e.g. when paused).
    Failed(Failure),
}

/// The latest round of restarts of one VaultSecret, handed to the reconciler.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The content hash the round was for.
    pub hash: String,
    /// The Secret, for messages.
    pub secret: String,
    /// The workloads of the round and how each went.
    pub outcomes: BTreeMap<WorkloadRef, Outcome>,
    /// Workloads whose pod template was changed for this hash (in this round or an earlier one).
    pub restarted: BTreeSet<WorkloadRef>,
    /// Set when the workloads could not even be listed.
    pub failure: Option<Failure>,
}

/// How the `RolloutRestart` condition should read after a [`Report`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub ok: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Report {
    /// Whether every workload now has the current content (nothing left to retry).
    pub fn succeeded(&self) -> bool {
        self.failure.is_none() && self.outcomes.values().all(|o| *o == Outcome::Done)
    }

    /// The condition this report makes.
    pub fn summary(&self) -> Summary {
        let failures: Vec<&Failure> = self
            .failure
            .iter()
            .chain(self.outcomes.values().filter_map(|o| match o {
                Outcome::Failed(f) => Some(f),
                Outcome::Done => None,
            }))
            .collect();
        if let Some(first) = failures.first() {
            let messages: Vec<String> = failures.iter().map(|f| f.message.clone()).collect();
            return Summary {
                ok: false,
                reason: first.reason,
                message: format!("{}; retrying with backoff", list(&messages)),
            };
        }
        let secret = &self.secret;
        if !self.restarted.is_empty() {
            let names: Vec<String> = self.restarted.iter().map(ToString::to_string).collect();
            return Summary {
                ok: true,
                reason: rollout::RESTARTED,
                message: format!(
                    "Restarted {} after the content of Secret {secret} changed",
                    list(&names)
                ),
            };
        }
        if self.outcomes.is_empty() {
            return Summary {
                ok: true,
                reason: rollout::NO_WORKLOADS,
                message: format!("No workload uses Secret {secret}"),
            };
        }
        let names: Vec<String> = self.outcomes.keys().map(ToString::to_string).collect();
        Summary {
            ok: true,
            reason: rollout::UP_TO_DATE,
            message: format!("{} already had the current content of Secret {secret}", list(&names)),
        }
    }
}

/// `a, b, c`, or `a, b, c and 7 more` for long lists (messages stay short).
fn list(items: &[String]) -> String {
    const SHOWN: usize = 8;
    let head = items.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    match items.len().saturating_sub(SHOWN) {
        0 => head,
        more => format!("{head} and {more} more"),
    }
}

/// One patch attempt, for a `rollout_restarts_total{namespace, kind, result}` counter.
#[derive(Clone, Copy, Debug)]
pub struct RolloutResult<'a> {
    pub namespace: &'a str,
    pub kind: WorkloadKind,
    /// `restarted`, `unchanged`, or the failure reason (`TargetNotFound`, `Forbidden`, …).
    pub result: &'static str,
}

/// Called once per patch attempt (metrics hook).
pub type ResultHook = Arc<dyn Fn(&RolloutResult<'_>) + Send + Sync>;

/// The content hash whose restarts are pending after a sync that found `hash`.
///
/// A change of content is a rotation only when the Secret existed under the same name with a
/// recorded, different hash: the first sync of a new VaultSecret, an adopted Secret, a renamed
/// destination, a refresh with the same content and a metadata-only change restart nothing.
/// Restarts still pending from an earlier change stay pending, for the current content. Without
/// active `spec.rollout` nothing is pending.
pub fn pending_after_sync(
    previous: &VaultSecretStatus,
    existed: bool,
    name: &str,
    hash: &str,
    active: bool,
) -> Option<String> {
    if !active || previous.secret_name.as_deref() != Some(name) {
        return None;
    }
    let rotated = existed && previous.secret_hash.as_deref().is_some_and(|h| h != hash);
    (rotated || previous.pending_rollout_hash.is_some()).then(|| hash.to_owned())
}

/// The restart machinery shared by every reconcile: a per-workload debouncer, flushed by a
/// background task.
pub struct Rollouts {
    shared: Arc<driver::Shared>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Rollouts {
    /// Starts the background task. Returns the handle and the stream of VaultSecrets that have a
    /// new [`Report`] (feed it to the controller's `reconcile_on`).
    pub fn start(
        client: Client,
        recorder: crate::events::Publisher,
        backoff: Backoff,
        on_result: ResultHook,
    ) -> (Self, mpsc::UnboundedReceiver<ObjectRef<VaultSecret>>) {
        let (triggers, reports) = mpsc::unbounded();
        let shared = Arc::new(driver::Shared::new(client, recorder, backoff, on_result, triggers));
        let task = tokio::spawn(driver::run(shared.clone()));
        let rollouts = Rollouts {
            shared,
            task: Mutex::new(Some(task)),
        };
        (rollouts, reports)
    }

    /// Asks for the restarts of `request`. Repeating a request that is already underway (same
    /// target) changes nothing; a different one replaces it.
    pub fn request(&self, request: Request) {
        self.shared.request(request);
    }

    /// Forgets `owner`'s request, if any.
    pub fn cancel(&self, owner: &ObjectRef<VaultSecret>) {
        self.shared.cancel(owner);
    }

    /// Takes the latest report for `owner`, if one arrived since the last call.
    pub fn take_report(&self, owner: &ObjectRef<VaultSecret>) -> Option<Report> {
        self.shared.take_report(owner)
    }

    /// Forgets every VaultSecret for which `keep` is false (deleted ones).
    pub fn retain(&self, keep: impl Fn(&ObjectRef<VaultSecret>) -> bool) {
        self.shared.retain(keep);
    }

    /// Stops the background task; restarts still waiting are dropped (the status keeps them
    /// pending, and the next operator finishes them).
    pub fn stop(&self) {
        if let Some(task) = self.task.lock().take() {
            task.abort();
        }
    }
}

impl Drop for Rollouts {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synced(name: &str, hash: &str, pending: Option<&str>) -> VaultSecretStatus {
        VaultSecretStatus {
            secret_name: Some(name.into()),
            secret_hash: Some(hash.into()),
            pending_rollout_hash: pending.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn a_changed_hash_of_an_existing_secret_is_a_rotation() {
        assert_eq!(
            pending_after_sync(&synced("s", "h1", None), true, "s", "h2", true).as_deref(),
            Some("h2")
        );
    }

    #[test]
    fn first_syncs_unchanged_refreshes_renames_and_inactive_rollouts_restart_nothing() {
        let fresh = VaultSecretStatus::default();
        assert_eq!(pending_after_sync(&fresh, false, "s", "h1", true), None, "first sync");
        assert_eq!(
            pending_after_sync(&fresh, true, "s", "h1", true),
            None,
            "adopted Secret"
        );
        let before = synced("s", "h1", None);
        assert_eq!(pending_after_sync(&before, true, "s", "h1", true), None, "same content");
        assert_eq!(pending_after_sync(&before, true, "t", "h2", true), None, "renamed");
        assert_eq!(
            pending_after_sync(&before, false, "s", "h2", true),
            None,
            "Secret was deleted"
        );
        assert_eq!(
            pending_after_sync(&before, true, "s", "h2", false),
            None,
            "no spec.rollout"
        );
    }

    #[test]
    fn a_pending_hash_stays_until_done_and_a_newer_change_replaces_it() {
        let pending = synced("s", "h2", Some("h2"));
        assert_eq!(
            pending_after_sync(&pending, true, "s", "h2", true).as_deref(),
            Some("h2")
        );
        assert_eq!(
            pending_after_sync(&pending, true, "s", "h3", true).as_deref(),
            Some("h3")
        );
        assert_eq!(
            pending_after_sync(&pending, true, "s", "h2", false),
            None,
            "rollout removed"
        );
    }

    fn web() -> WorkloadRef {
        WorkloadRef::new(WorkloadKind::Deployment, "shop", "web")
    }

    fn report(outcomes: &[(WorkloadRef, Outcome)], restarted: &[WorkloadRef]) -> Report {
        Report {
            hash: "h".into(),
            secret: "db".into(),
            outcomes: outcomes.iter().cloned().collect(),
            restarted: restarted.iter().cloned().collect(),
            failure: None,
        }
    }

    #[test]
    fn the_summary_names_what_was_restarted_or_what_failed() {
        let done = report(&[(web(), Outcome::Done)], &[web()]);
        assert!(done.succeeded());
        assert_eq!(done.summary().reason, "Restarted");
        assert_eq!(
            done.summary().message,
            "Restarted Deployment web after the content of Secret db changed"
        );
        assert_eq!(report(&[(web(), Outcome::Done)], &[]).summary().reason, "UpToDate");
        assert_eq!(report(&[], &[]).summary().reason, "NoWorkloads");

        let missing = Failure::new("TargetNotFound", "Deployment gone not found in namespace shop".into());
        let gone = WorkloadRef::new(WorkloadKind::Deployment, "shop", "gone");
        let failed = report(&[(web(), Outcome::Done), (gone, Outcome::Failed(missing))], &[web()]);
        assert!(!failed.succeeded());
        let summary = failed.summary();
        assert!(!summary.ok);
        assert_eq!(summary.reason, "TargetNotFound");
        assert!(
            summary.message.contains("Deployment gone not found"),
            "{}",
            summary.message
        );
    }

    #[test]
    fn long_lists_are_cut() {
        let items: Vec<String> = (0..20).map(|i| format!("w{i}")).collect();
        assert_eq!(list(&items[..2]), "w0, w1");
        assert!(list(&items).ends_with("w7 and 12 more"));
    }
}

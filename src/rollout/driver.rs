//! The background task: resolves requests into workloads, waits out each workload's debounce,
//! patches, emits Events, and reports back to the reconciler. Retries failures with backoff.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

use futures::StreamExt;
use futures::channel::mpsc;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::Notify;

use super::debounce::{Batch, Contribution, Pending};
use super::{Failure, Outcome, Report, Request, ResultHook, RolloutResult, WorkloadRef, key_for, workload};
use crate::api::VaultSecret;
use crate::backoff::Backoff;
use crate::events::{Event, EventType, Publisher};
use crate::reasons::{event, rollout};

/// Event reason of a restart, on the VaultSecret and on the workload.
pub const RESTART_TRIGGERED: &str = event::ROLLOUT_RESTART_TRIGGERED;

/// Failure reason of a workload whose template was updated but that is paused.
const PAUSED: &str = rollout::WORKLOAD_PAUSED;

/// Most workloads patched at once.
const PATCH_CONCURRENCY: usize = 16;

/// State shared by the [`super::Rollouts`] handle and the task.
pub struct Shared {
    client: Client,
    recorder: Publisher,
    backoff: Backoff,
    on_result: ResultHook,
    triggers: mpsc::UnboundedSender<ObjectRef<VaultSecret>>,
    wake: Notify,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    pending: Pending,
    owners: HashMap<ObjectRef<VaultSecret>, Owner>,
    reports: HashMap<ObjectRef<VaultSecret>, Report>,
}

/// One VaultSecret's request and how far it got.
struct Owner {
    request: Request,
    /// When to (re)list its workloads: now for a new request, after a backoff to retry.
    resolve_at: Option<Instant>,
    /// The first round waits out the debounce; retries do not (the backoff already waited).
    retry: bool,
    failures: u32,
    /// Workloads of the current round still to be patched.
    waiting: BTreeSet<WorkloadRef>,
    outcomes: BTreeMap<WorkloadRef, Outcome>,
    restarted: BTreeSet<WorkloadRef>,
    failure: Option<Failure>,
}

impl Shared {
    pub fn new(
        client: Client,
        recorder: Publisher,
        backoff: Backoff,
        on_result: ResultHook,
        triggers: mpsc::UnboundedSender<ObjectRef<VaultSecret>>,
    ) -> Self {
        Self {
            client,
            recorder,
            backoff,
            on_result,
            triggers,
            wake: Notify::new(),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    pub fn request(&self, request: Request) {
        let mut state = self.lock();
        if state
            .owners
            .get(&request.owner)
            .is_some_and(|o| o.request.target == request.target)
        {
            return;
        }
        let owner = request.owner.clone();
        state.pending.withdraw(&owner);
        state.reports.remove(&owner);
        let entry = Owner {
            request,
            resolve_at: Some(Instant::now()),
            retry: false,
            failures: 0,
            waiting: BTreeSet::new(),
            outcomes: BTreeMap::new(),
            restarted: BTreeSet::new(),
            failure: None,
        };
        state.owners.insert(owner, entry);
        drop(state);
        self.wake.notify_one();
    }

    pub fn cancel(&self, owner: &ObjectRef<VaultSecret>) {
        let mut state = self.lock();
        if state.owners.remove(owner).is_some() {
            state.pending.withdraw(owner);
        }
        state.reports.remove(owner);
    }

    pub fn take_report(&self, owner: &ObjectRef<VaultSecret>) -> Option<Report> {
        self.lock().reports.remove(owner)
    }

    pub fn retain(&self, keep: impl Fn(&ObjectRef<VaultSecret>) -> bool) {
        let mut state = self.lock();
        let gone: Vec<_> = state.owners.keys().filter(|k| !keep(k)).cloned().collect();
        for owner in gone {
            state.owners.remove(&owner);
            state.pending.withdraw(&owner);
        }
        state.reports.retain(|k, _| keep(k));
    }

    /// Ends a round of `owner`: stores its report, schedules a retry if anything failed, and
    /// wakes the reconciler.
    fn finish_round(&self, state: &mut State, owner: &ObjectRef<VaultSecret>, now: Instant) {
        let Some(o) = state.owners.get_mut(owner) else {
            return;
        };
        let report = Report {
            hash: o.request.target.hash.clone(),
            secret: o.request.target.secret.clone(),
            outcomes: o.outcomes.clone(),
            restarted: o.restarted.clone(),
            failure: o.failure.clone(),
        };
        if report.succeeded() {
            o.failures = 0;
        } else {
            o.failures += 1;
            o.retry = true;
            o.resolve_at = Some(now + self.backoff.delay(o.failures, &mut rand::rng()));
        }
        state.reports.insert(owner.clone(), report);
        // The receiver lives as long as the controller; after that nobody needs the report.
        let _ = self.triggers.unbounded_send(owner.clone());
    }
}

/// Runs until aborted.
pub async fn run(shared: Arc<Shared>) {
    loop {
        let next = next_wake(&shared.lock());
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = shared.wake.notified() => {}
                }
            }
            None => shared.wake.notified().await,
        }
        let due = due_resolutions(&mut shared.lock(), Instant::now());
        futures::future::join_all(due.into_iter().map(|r| resolve(&shared, r))).await;
        let batches = shared.lock().pending.take_due(Instant::now());
        futures::stream::iter(batches)
            .for_each_concurrent(PATCH_CONCURRENCY, |(w, batch)| flush(&shared, w, batch))
            .await;
    }
}

fn next_wake(state: &State) -> Option<Instant> {
    let resolves = state.owners.values().filter_map(|o| o.resolve_at);
    resolves.chain(state.pending.next_deadline()).min()
}

fn due_resolutions(state: &mut State, now: Instant) -> Vec<Request> {
    let mut due = Vec::new();
    for o in state.owners.values_mut() {
        if o.resolve_at.is_some_and(|at| at <= now) {
            o.resolve_at = None;
            due.push(o.request.clone());
        }
    }
    due
}

/// Lists the workloads of `request` and queues the annotation for each.
async fn resolve(shared: &Shared, request: Request) {
    let selected = workload::select(&shared.client, &request.target).await;
    let now = Instant::now();
    let mut state = shared.lock();
    let state = &mut *state;
    let owner = request.owner.clone();
    let Some(o) = state.owners.get_mut(&owner) else {
        return;
    };
    if o.request.target != request.target {
        return; // superseded while listing
    }
    match selected {
        Err(failure) => {
            tracing::info!(namespace = %request.target.namespace, vaultsecret = %owner.name, reason = failure.reason, "rollout: {}", failure.message);
            o.failure = Some(failure);
            shared.finish_round(state, &owner, now);
        }
        Ok(workloads) => {
            o.failure = None;
            o.outcomes.retain(|w, _| workloads.contains(w));
            o.waiting = workloads.iter().cloned().collect();
            let wait = if o.retry {
                Duration::ZERO
            } else {
                request.target.debounce
            };
            let key = key_for(&request.target.secret);
            for w in workloads {
                let change = Contribution {
                    hash: request.target.hash.clone(),
                    owner: owner.clone(),
                };
                state.pending.add(w, key.clone(), change, now, wait);
            }
            if o.waiting.is_empty() {
                shared.finish_round(state, &owner, now);
            }
        }
    }
}

/// Patches one workload with everything waiting for it, then records the outcome for every
/// VaultSecret that contributed.
async fn flush(shared: &Shared, workload: WorkloadRef, batch: Batch) {
    let annotations: BTreeMap<String, String> = batch
        .annotations
        .iter()
        .map(|(k, c)| (k.clone(), c.hash.clone()))
        .collect();
    let result = workload::patch(&shared.client, &workload, &annotations).await;
    let (outcome, changed, reference) = match result {
        Ok(p) if p.paused => {
            let failure = Failure::new(
                PAUSED,
                format!("{workload} is paused: its pod template has the current content and it restarts when resumed"),
            );
            (Outcome::Failed(failure), p.changed, Some(p.reference))
        }
        Ok(p) => (Outcome::Done, p.changed, Some(p.reference)),
        Err(f) => (Outcome::Failed(f), false, None),
    };
    let result = match (&outcome, changed) {
        (Outcome::Failed(f), _) => f.reason,
        (Outcome::Done, true) => "restarted",
        (Outcome::Done, false) => "unchanged",
    };
    (shared.on_result)(&RolloutResult {
        namespace: &workload.namespace,
        kind: workload.kind,
        result,
    });

    // Record, then publish Events outside the lock.
    let now = Instant::now();
    let mut owners: Vec<(ObjectReference, String)> = Vec::new();
    {
        let mut state = shared.lock();
        let state = &mut *state;
        for c in batch.annotations.values() {
            let Some(o) = state.owners.get_mut(&c.owner) else {
                continue;
            };
            if o.request.target.hash != c.hash || !o.waiting.remove(&workload) {
                continue; // superseded by a newer request
            }
            owners.push((o.request.regarding.clone(), o.request.target.secret.clone()));
            o.outcomes.insert(workload.clone(), outcome.clone());
            if changed {
                o.restarted.insert(workload.clone());
            }
            if o.waiting.is_empty() {
                shared.finish_round(state, &c.owner, now);
            }
        }
    }
    if let Outcome::Failed(f) = &outcome {
        tracing::info!(namespace = %workload.namespace, %workload, reason = f.reason, "rollout: {}", f.message);
    }
    if changed && let Some(reference) = reference {
        let paused = matches!(&outcome, Outcome::Failed(f) if f.reason == PAUSED);
        publish_restart(shared, &workload, &reference, &owners, paused).await;
    }
}

/// `RolloutRestartTriggered` on the workload and on each VaultSecret whose change it carries.
async fn publish_restart(
    shared: &Shared,
    workload: &WorkloadRef,
    reference: &ObjectReference,
    owners: &[(ObjectReference, String)],
    paused: bool,
) {
    let mut secrets: Vec<&str> = owners.iter().map(|(_, s)| s.as_str()).collect();
    secrets.sort_unstable();
    secrets.dedup();
    let when = if paused {
        "; it is paused and restarts when resumed"
    } else {
        ""
    };
    let note = format!("Restarting: content of Secret {} changed{when}", secrets.join(", "));
    publish(shared, reference, note).await;
    for (regarding, secret) in owners {
        let mut note = format!("Restarting {workload}: content of Secret {secret} changed");
        if secrets.len() > 1 {
            note.push_str(&format!(" (one rollout for {} changed Secrets)", secrets.len()));
        }
        note.push_str(when);
        publish(shared, regarding, note).await;
    }
}

async fn publish(shared: &Shared, reference: &ObjectReference, note: String) {
    let event = Event {
        type_: EventType::Normal,
        reason: RESTART_TRIGGERED.into(),
        note: Some(note),
        action: event::ROLLOUT_RESTART.into(),
        secondary: None,
    };
    shared.recorder.publish(&event, reference).await;
}

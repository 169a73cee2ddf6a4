//! The VaultSecret controller: watches VaultSecrets and the Secrets they own, and syncs.

mod deadlines;
mod deletion;
mod destination;
mod error;
mod fair;
mod leases;
mod owned;
mod packed;
mod reconcile;
mod report;
mod resolve;
mod restarts;
mod schedule;
mod scopes;
mod secret_map;
mod siblings;
mod slim;
mod sources;
mod sync;
mod tokens;
mod tracker;

use report::{failure, status};
use resolve::{connection, identity, trust};
use tokens::release;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use url::Url;

pub use crate::backoff::Backoff;
pub use error::{Error, Result};
pub use trust::Refusal;

use crate::api::VaultSecret;
use crate::hash::HashKey;
use crate::http::Readiness;
use crate::metrics::Metrics;
use crate::rollout;
use crate::{MANAGED_BY_LABEL, MANAGER, events, vault};

/// Operator-wide settings, built from the command line by `vaultsync run`.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Vault address used when `spec.vault.address` is absent.
    pub vault_address: Option<Url>,
    /// PEM CA bundle used when `spec.vault.caSecretRef` is absent.
    pub vault_ca_pem: Option<Arc<[u8]>>,
    /// The operator's own Vault token (development and single-tenant setups).
    pub vault_token: Option<String>,
    /// Namespaces whose VaultSecrets may use the operator's own token when they have no
    /// `spec.auth`; `*` allows every namespace. Empty (the default): none may.
    pub default_identity_namespaces: Vec<String>,
    /// Of those, the namespaces whose VaultSecrets may also issue `dynamic` and `pki` sources with
    /// the operator's own token; `*` allows every namespace. Empty (the default): `kv` only.
    pub default_identity_leases_namespaces: Vec<String>,
    /// Addresses besides `vault_address` that `spec.vault.address` may name. No credential, and
    /// no request at all, goes to any other address.
    pub allowed_vault_addresses: Vec<Url>,
    /// Audiences `spec.auth.kubernetes.audiences` may ask for (default `vault`). A token the
    /// Kubernetes API server accepts is discarded whatever its audience.
    pub allowed_token_audiences: Vec<String>,
    /// Longest `spec.auth.kubernetes.tokenExpirationSeconds` (default 600 s).
    pub max_token_expiration: Duration,
    /// Timeout of one Vault request.
    pub vault_timeout: Duration,
    /// Retry backoff after a failed sync.
    pub backoff: Backoff,
    /// Most reconciles running at once.
    pub concurrency: u16,
    /// Namespace the operator runs in (holds the hash-key Secret).
    pub namespace: String,
    /// Name of the Secret holding the key for `status.secretHash`.
    pub hash_key_secret: String,
    /// Name reported on Events (e.g. the pod name).
    pub instance: Option<String>,
    /// How long workload restarts wait for further changes (`spec.rollout.debounce` overrides it).
    pub rollout_debounce: Duration,
    /// Render `spec.destination.templates` (on by default; each VaultSecret's templates render in
    /// a child process with memory, CPU and time limits). Off, VaultSecrets with templates are
    /// refused (`TemplatesDisabled`).
    pub allow_templates: bool,
    /// `spec.refresh.interval` when a VaultSecret sets none.
    pub default_refresh: Duration,
    /// Namespaces whose VaultSecrets are reconciled; empty means all.
    pub watch_namespaces: Vec<String>,
}

#[cfg(test)]
impl Settings {
    /// What `vaultsync run` has without flags, for unit tests.
    pub(crate) fn for_tests() -> Settings {
        crate::cli::RunArgs::defaults()
            .into_settings()
            .expect("the defaults are valid")
            .0
    }
}

/// Shared state of the controller, built once.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// How `client` reaches the API server, to present a minted token there alone (never to
    /// send anything with the operator's identity).
    pub kube_config: kube::Config,
    /// Publishes Events on VaultSecrets.
    pub recorder: events::Publisher,
    /// Authenticated Vault clients, one per (connection, identity).
    pub vault: vault::Sessions,
    /// KV reads, identical ones coalesced.
    pub kv: vault::kv::Reads,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Operator-wide settings.
    pub settings: Settings,
    /// Key of `status.secretHash`.
    pub hash_key: HashKey,
    /// Metadata (never data) of the Secrets vaultsync manages.
    pub secrets: owned::OwnedSecrets,
    /// Debounced workload restarts (`spec.rollout`), shared by every reconcile.
    pub rollouts: rollout::Rollouts,
    /// Tokens of leases that a deletion left to expire (`revokeOnDelete: false`).
    orphans: release::Orphans,
    /// Leases of deleted VaultSecrets still to revoke when Vault answers.
    owed: leases::OwedRevocations,
    /// When each VaultSecret is due, what it last saw, and the tokens its leases came from.
    tracker: tracker::Tracker,
    /// The VaultSecrets that may restart the same workloads, synced at once on a change.
    siblings: siblings::Siblings,
    /// Fair turns, by namespace, for what the VaultSecret watch brings.
    fair: Arc<fair::Fair>,
    /// ServiceAccount UIDs read in the last second (identities of Kubernetes-auth logins).
    service_account_uids: resolve::recent_uids::RecentUids,
}

impl Context {
    /// Drops what is remembered about VaultSecret `key`, its pending restarts and its metric
    /// series: when the watch sees it deleted, and when the janitor finds it gone.
    fn forget(&self, key: &ObjectRef<VaultSecret>) {
        self.fair.remove(key);
        self.rollouts.cancel(key);
        self.tracker.forget(key);
        self.metrics
            .forget(key.namespace.as_deref().unwrap_or_default(), &key.name);
    }

    /// After `vs` found new content that schedules a restart: its siblings sync now.
    fn nudge_siblings(&self, vs: &VaultSecret) {
        let nudged = self.siblings.nudge(vs, &self.tracker);
        if nudged > 0 {
            tracing::debug!(
                nudged,
                "synced at once the VaultSecrets that may restart the same workloads"
            );
        }
    }
}

/// The key the controller's bookkeeping (tracker, fair turns, restarts) keeps for `vs`: its
/// namespace and name only. `ObjectRef::from_obj` also copies its UID and resourceVersion, two
/// more strings per key that no lookup reads (`ObjectRef` equality ignores them).
fn key_of(vs: &VaultSecret) -> ObjectRef<VaultSecret> {
    let key = ObjectRef::new(vs.metadata.name.as_deref().unwrap_or_default());
    match vs.metadata.namespace.as_deref() {
        Some(namespace) => key.within(namespace),
        None => key,
    }
}

/// An API for `K` in `namespace`, or in all namespaces.
fn scoped<K>(client: Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    }
}

/// Waits until VaultSecrets can be listed in every scope: an operator started before its CRD (or
/// its RBAC) waits for it, not ready and saying why, rather than exiting into a crash loop.
async fn wait_until_listable(client: Client, scopes: &[scopes::Scope]) {
    for scope in scopes {
        wait_until_listable_in(&scoped::<VaultSecret>(client.clone(), scope.as_deref())).await;
    }
}

async fn wait_until_listable_in(api: &Api<VaultSecret>) {
    let mut delay = Duration::from_secs(1);
    loop {
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => return,
            Err(e) => tracing::warn!(
                "cannot list VaultSecrets ({}); is the CRD installed? (`kubectl apply -f \
                 crds/vaultsecret.yaml`) Waiting for it, next try in {}s",
                crate::kube_error_message(&e),
                delay.as_secs()
            ),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Runs the controller, as the identity `kube_config` gives, until `shutdown` completes.
pub async fn run(
    kube_config: kube::Config,
    settings: Settings,
    metrics: Metrics,
    ready: Readiness,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    // Writes stop at once should this replica stop leading (`leader::fence`).
    let client = kube::client::ClientBuilder::try_from(kube_config.clone())?
        .with_layer(&crate::leader::fence::Layer)
        .build();
    // One watch of all namespaces, or one per watched namespace.
    let scopes = scopes::of(&settings.watch_namespaces);
    let mut shutdown = Box::pin(shutdown);
    tokio::select! {
        () = wait_until_listable(client.clone(), &scopes) => {}
        () = &mut shutdown => return Ok(()),
    }
    let hash_key = HashKey::load_or_create(client.clone(), &settings.namespace, &settings.hash_key_secret)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot load or create hash key Secret {}/{}: {e}",
                settings.namespace,
                settings.hash_key_secret
            )
        })?;

    let secrets = owned::OwnedSecrets::default();
    let cache = secrets.clone();
    let owned = futures::stream::select_all(scopes.iter().map(|scope| {
        let cache = cache.clone();
        let scope = scope.clone();
        watcher(
            scoped::<PartialObjectMeta<Secret>>(client.clone(), scope.as_deref()),
            watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGER}")),
        )
        .default_backoff()
        .inspect(move |event| {
            if let Ok(event) = event {
                cache.apply(&scope, event);
            }
        })
        .boxed()
    }))
    .touched_objects();

    let recorder = events::Publisher::new(client.clone(), MANAGER, settings.instance.as_deref());
    let restarts = metrics.rollout_restarts.clone();
    let on_restart: rollout::ResultHook = Arc::new(move |r: &rollout::RolloutResult<'_>| {
        restarts
            .with_label_values(&[r.namespace, r.kind.as_str(), r.result])
            .inc();
    });
    let (rollouts, restart_reports) =
        rollout::Rollouts::start(client.clone(), recorder.clone(), settings.backoff, on_restart);
    let token_store = Arc::new(tokens::secret_token_store(client.clone(), &settings.namespace));
    let sessions =
        vault::Sessions::new(settings.vault_timeout, settings.backoff, metrics.clone()).with_store(token_store);
    let (ending_tx, mut ending_rx) = tokio::sync::mpsc::unbounded_channel();
    sessions.notify_ending(ending_tx);
    let (store, vs_writer) = reflector::store::<packed::Packed>();
    let (nudge_tx, nudges) = futures::channel::mpsc::unbounded();
    let owed = leases::OwedRevocations::new(client.clone(), &settings.namespace);
    let ctx = Arc::new(Context {
        recorder,
        vault: sessions,
        kv: vault::kv::Reads::new(metrics.clone()),
        metrics,
        client,
        kube_config,
        hash_key,
        secrets,
        orphans: release::Orphans::default(),
        owed,
        tracker: tracker::Tracker::default(),
        siblings: siblings::Siblings::new(store.clone(), nudge_tx),
        rollouts,
        fair: fair::Fair::new(usize::from(settings.concurrency)),
        service_account_uids: Default::default(),
        settings,
    });

    // The VaultSecret watch also tells when one is deleted: its state and metric series go.
    let deleted_ctx = ctx.clone();
    let (listed_tx, listed) = tokio::sync::watch::channel(false);
    let vaultsecrets = scopes::vaultsecret_events(&ctx.client, &scopes, store.clone())
        .reflect(vs_writer)
        .inspect(move |event| match event {
            Ok(watcher::Event::Delete(packed)) => {
                match packed.unpack() {
                    Ok(vs) => deleted_ctx.orphans.note_deleted(&vs),
                    Err(e) => tracing::error!(error = %e, "deleted VaultSecret"),
                }
                deleted_ctx.forget(&packed.key());
            }
            // The first listing is complete: the controller knows every VaultSecret.
            Ok(watcher::Event::InitDone) => {
                ready.set(true);
                listed_tx.send_replace(true);
            }
            _ => {}
        })
        .applied_objects();
    // A token reaching its max TTL: the VaultSecrets with leases from it sync now.
    let ending_ctx = ctx.clone();
    let ending = futures::stream::poll_fn(move |cx| ending_rx.poll_recv(cx))
        .flat_map(move |token_ref| futures::stream::iter(ending_ctx.tracker.due_for_token(&token_ref)));
    // What the watch brings waits its namespace's turn ([`fair`]), not in the controller's queue.
    // (Also the events of a VaultSecret's own status writes: sent past this queue they waited in
    // the controller's, ahead of a newcomer's turn — probe p50 0.38 s became 1.58 s at 10,000.)
    let fair = ctx.fair.clone();
    let watch = tokio::spawn(vaultsecrets.for_each(move |vs| {
        match vs {
            Ok(packed) => match packed.unpack() {
                Ok(vs) => fair.push(&vs),
                Err(e) => tracing::error!(error = %e, "VaultSecret watch"),
            },
            Err(e) => tracing::debug!(error = %e, "VaultSecret watch"),
        }
        std::future::ready(())
    }));
    // Refreshes and retries, each when due.
    let due_ctx = ctx.clone();
    let due = futures::stream::unfold(due_ctx, |ctx| async move {
        let keys = ctx.tracker.due().await;
        Some((futures::stream::iter(keys), ctx))
    })
    .flatten();
    let nothing = futures::stream::pending::<Result<packed::Packed, watcher::Error>>();
    let controller = Controller::for_stream(nothing, store.clone())
        .reconcile_on(ctx.fair.clone().turns().map(packed::cache_key))
        .owns_stream(owned)
        .reconcile_on(restart_reports.map(packed::cache_key))
        .reconcile_on(ending.map(packed::cache_key))
        .reconcile_on(nudges.map(packed::cache_key))
        .reconcile_on(due.map(packed::cache_key))
        .with_config(kube::runtime::controller::Config::default().concurrency(ctx.settings.concurrency))
        .graceful_shutdown_on(shutdown);
    let rollouts_ctx = ctx.clone();
    let releaser = tokio::spawn(release::run(ctx.clone(), store.clone(), listed));
    let revoker = tokio::spawn(leases::owed::run(ctx.clone()));
    let janitor_ctx = ctx.clone();
    let janitor = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tick.tick().await;
            for key in janitor_ctx.tracker.keys() {
                if store.get(&packed::cache_key(key.clone())).is_none() {
                    janitor_ctx.forget(&key);
                }
            }
            janitor_ctx
                .rollouts
                .retain(|key| store.get(&packed::cache_key(key.clone())).is_some());
            janitor_ctx.vault.prune();
            janitor_ctx.secrets.forget_gone(Duration::from_secs(600));
        }
    });
    tracing::info!("vaultsync controller started");
    controller
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
    janitor.abort();
    watch.abort();
    releaser.abort();
    revoker.abort();
    rollouts_ctx.rollouts.stop();
    tracing::info!("vaultsync controller stopped");
    Ok(())
}

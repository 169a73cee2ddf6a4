//! Leader election on a `coordination.k8s.io` Lease, so several replicas can run and one syncs.
//!
//! Timings follow client-go's (15 s lease, 10 s renew deadline, 2 s retry) scaled to the
//! configured lease duration:
//! - the leader renews every retry period, each Lease call bounded by that period (the client has
//!   no read timeout of its own, and a hung renewal must not look like a slow one);
//! - a leader that has not renewed within the renew deadline — counted from when the last
//!   successful renewal was *sent* — stops leading: its [`fence`] closes (every Vault request
//!   but a token lookup waits at it, Kubernetes writes are refused, and a watchdog thread ends
//!   the process), a third of the lease before any standby may take over;
//! - a standby judges expiry by its own clock: it takes the Lease only after seeing the same
//!   record (holder, renew time, resourceVersion) unchanged for a whole lease duration, never by
//!   comparing the holder's `renewTime` with its clock (replicas' clocks may differ).
//!
//! On shutdown the leader releases the Lease so a standby takes over at once.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};
use parking_lot::Mutex;

/// One participant in the election.
pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    /// The Lease as this replica last saw it held by another, and when it first saw it so.
    observed: Mutex<Option<(Record, Instant)>>,
    fence: fence::Fence,
}

/// What changes whenever the holder renews.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Record {
    holder: String,
    renew_time: Option<MicroTime>,
    resource_version: Option<String>,
}

/// Why a Lease call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Kube(kube::Error),
    #[error("no answer from the API server within {0:?}")]
    Timeout(Duration),
}

impl LeaderElection {
    /// Competes for Lease `name` in `namespace` as `identity`, with a lease of `duration`.
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, duration: Duration) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            duration,
            observed: Mutex::new(None),
            fence: fence::Fence::default(),
        }
    }

    /// Open while this participant leads; see [`fence::install`].
    pub fn fence(&self) -> fence::Fence {
        self.fence.clone()
    }

    /// Returns once this participant holds the Lease; its [`fence`](Self::fence) is then open
    /// until the renew deadline.
    pub async fn acquire(&self) {
        let mut announced = false;
        loop {
            let sent = Instant::now();
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    self.fence.open_until(sent + self.renew_deadline());
                    tracing::info!(identity = self.identity, lease = self.name, "became the leader");
                    return;
                }
                Ok(false) if !announced => {
                    tracing::info!(
                        identity = self.identity,
                        lease = self.name,
                        "standing by: another replica leads"
                    );
                    announced = true;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election: cannot read or write the Lease"),
            }
            tokio::time::sleep(self.retry_period()).await;
        }
    }

    /// Keeps renewing the Lease; returns when leadership is lost (the renew deadline passed
    /// without a successful renewal, or another replica holds the Lease). The fence is closed by
    /// then.
    pub async fn hold(&self) {
        loop {
            tokio::time::sleep(self.retry_period()).await;
            let sent = Instant::now();
            match self.try_acquire_or_renew().await {
                Ok(true) => self.fence.open_until(sent + self.renew_deadline()),
                Ok(false) => break,
                Err(e) if self.fence.is_open() => tracing::warn!(error = %e, "cannot renew the Lease"),
                Err(_) => break,
            }
            if !self.fence.is_open() {
                break;
            }
        }
        self.fence.close();
        tracing::error!(identity = self.identity, lease = self.name, "lost leadership");
    }

    /// Gives the Lease up so a standby can take over at once.
    pub async fn release(&self) {
        self.fence.close();
        let Ok(Some(mut lease)) = self.call(self.api.get_opt(&self.name)).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        match self
            .call(self.api.replace(&self.name, &PostParams::default(), &lease))
            .await
        {
            Ok(_) => tracing::info!(identity = self.identity, "released the Lease"),
            Err(e) => tracing::warn!(error = %e, "could not release the Lease"),
        }
    }

    /// How often the leader renews and a standby looks (2 s of a 15 s lease).
    fn retry_period(&self) -> Duration {
        self.duration * 2 / 15
    }

    /// How long a leader may go without a successful renewal (10 s of a 15 s lease).
    fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    /// A Lease call, bounded by the retry period.
    async fn call<T>(&self, call: impl Future<Output = Result<T, kube::Error>>) -> Result<T, Error> {
        let limit = self.retry_period();
        tokio::time::timeout(limit, call)
            .await
            .map_err(|_| Error::Timeout(limit))?
            .map_err(Error::Kube)
    }

    /// Takes or renews the Lease if it is free, ours, or seen unchanged for a whole lease
    /// duration. Conflicts (another replica wrote first) count as not acquired.
    async fn try_acquire_or_renew(&self) -> Result<bool, Error> {
        let now = MicroTime(jiff::Timestamp::now());
        let seconds = i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.call(self.api.get_opt(&self.name)).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return conflict_is_false(self.call(self.api.create(&PostParams::default(), &lease)).await);
        };
        let resource_version = lease.resource_version();
        let spec = lease.spec.get_or_insert_with(Default::default);
        let ours = spec.holder_identity.as_deref() == Some(&self.identity);
        if !ours {
            let record = spec.holder_identity.clone().map(|holder| Record {
                holder,
                renew_time: spec.renew_time.clone(),
                resource_version,
            });
            if self.still_held(record, Instant::now()) {
                return Ok(false);
            }
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.holder_identity = Some(self.identity.clone());
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(seconds);
        let name = lease.name_any();
        conflict_is_false(self.call(self.api.replace(&name, &PostParams::default(), &lease)).await)
    }

    /// Whether another replica holds the Lease as `record` shows it (`None`: released), by this
    /// replica's clock: the record changed, or has not been seen unchanged for a lease duration.
    fn still_held(&self, record: Option<Record>, now: Instant) -> bool {
        let mut observed = self.observed.lock();
        let Some(record) = record else {
            *observed = None;
            return false;
        };
        match &*observed {
            Some((seen, since)) if *seen == record => now.duration_since(*since) < self.duration,
            _ => {
                *observed = Some((record, now));
                true
            }
        }
    }
}

/// A write another replica beat (409 Conflict) is "not acquired", not an error.
fn conflict_is_false(result: Result<Lease, Error>) -> Result<bool, Error> {
    match result {
        Ok(_) => Ok(true),
        Err(Error::Kube(kube::Error::Api(s))) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether this process may act as the leader now: from winning the Lease until the renew
/// deadline passes without a renewal. The binary [`fence::install`]s its election's fence, with a
/// watchdog thread that ends the process once the deadline has passed, so a replica frozen past
/// it (a paused VM, SIGSTOP) never acts again when it thaws; until it ends, every Vault request
/// but a token lookup waits at [`fence::may_act`] and Kubernetes writes are refused ([`fence::Layer`]). Without an installed fence (leader election off, tests) the
/// process may always act.
pub mod fence {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, OnceLock};
    use std::time::{Duration, Instant};

    /// How often the watchdog looks.
    pub const WATCHDOG_PERIOD: Duration = Duration::from_millis(100);

    /// One election's view of whether this replica leads.
    #[derive(Clone, Default)]
    pub struct Fence(Arc<State>);

    #[derive(Default)]
    struct State {
        /// Released or lost for good.
        closed: AtomicBool,
        /// Nanoseconds after [`epoch`] until which this replica leads.
        until: AtomicU64,
    }

    fn epoch() -> Instant {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        *EPOCH.get_or_init(Instant::now)
    }

    fn nanos(at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
    }

    impl Fence {
        /// Whether the deadline is still ahead and the fence was never closed.
        pub fn is_open(&self) -> bool {
            !self.0.closed.load(Ordering::SeqCst) && nanos(Instant::now()) < self.0.until.load(Ordering::SeqCst)
        }

        pub(super) fn open_until(&self, deadline: Instant) {
            self.0.until.store(nanos(deadline), Ordering::SeqCst);
        }

        pub(super) fn close(&self) {
            self.0.closed.store(true, Ordering::SeqCst);
        }

        /// Past its deadline without having been closed (released) first.
        fn expired(&self) -> bool {
            !self.0.closed.load(Ordering::SeqCst) && nanos(Instant::now()) >= self.0.until.load(Ordering::SeqCst)
        }
    }

    static INSTALLED: OnceLock<Fence> = OnceLock::new();

    /// Makes `fence` this process's: [`may_act`] follows it, and a watchdog thread ends the
    /// process once it expires. Call once leadership is won.
    pub fn install(fence: Fence) -> std::io::Result<()> {
        let watched = fence.clone();
        if INSTALLED.set(fence).is_err() {
            return Ok(());
        }
        std::thread::Builder::new()
            .name("leader-watchdog".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(WATCHDOG_PERIOD);
                    if watched.expired() {
                        tracing::error!(
                            "the Lease was not renewed within the renew deadline; exiting so a fresh process stands by"
                        );
                        std::process::exit(1);
                    }
                }
            })
            .map(drop)
    }

    /// Whether this process may act now.
    pub fn acting() -> bool {
        INSTALLED.get().is_none_or(Fence::is_open)
    }

    /// Waits forever if this process has stopped leading (the watchdog is about to end it), so
    /// nothing after this point acts; returns at once otherwise.
    pub async fn may_act() {
        if !acting() {
            std::future::pending::<()>().await;
        }
    }

    /// Refuses every Kubernetes request but reads once this process has stopped leading, before
    /// anything is sent: `ClientBuilder::with_layer(&fence::Layer)`.
    pub struct Layer;

    impl<S> tower::Layer<S> for Layer {
        type Service = Fenced<S>;

        fn layer(&self, inner: S) -> Fenced<S> {
            Fenced(inner)
        }
    }

    /// A Kubernetes client service behind the fence.
    pub struct Fenced<S>(S);

    type BoxError = Box<dyn std::error::Error + Send + Sync>;

    impl<S, B> tower::Service<http::Request<B>> for Fenced<S>
    where
        S: tower::Service<http::Request<B>>,
        S::Error: Into<BoxError>,
        S::Response: Send + 'static,
        S::Future: Send + 'static,
    {
        type Response = S::Response;
        type Error = BoxError;
        type Future = futures::future::BoxFuture<'static, Result<S::Response, BoxError>>;

        fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
            self.0.poll_ready(cx).map_err(Into::into)
        }

        fn call(&mut self, request: http::Request<B>) -> Self::Future {
            let read = matches!(*request.method(), http::Method::GET | http::Method::HEAD);
            if !read && !acting() {
                return Box::pin(std::future::ready(Err(
                    "this replica no longer leads: the request was not sent".into(),
                )));
            }
            let response = self.0.call(request);
            Box::pin(async move { response.await.map_err(Into::into) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn election(duration: u64) -> LeaderElection {
        let config = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        LeaderElection::new(client, "ns", "lease", "me", Duration::from_secs(duration))
    }

    fn record(holder: &str, version: &str) -> Option<Record> {
        Some(Record {
            holder: holder.into(),
            renew_time: None,
            resource_version: Some(version.into()),
        })
    }

    #[tokio::test]
    async fn a_standby_takes_over_only_after_seeing_the_same_record_for_a_whole_lease() {
        let e = election(15);
        let t0 = Instant::now();
        assert!(e.still_held(record("a", "1"), t0), "first sight: held");
        assert!(e.still_held(record("a", "1"), t0 + Duration::from_secs(14)));
        // A renewal seen restarts the count, whatever the holder's clock says.
        assert!(e.still_held(record("a", "2"), t0 + Duration::from_secs(14)));
        assert!(e.still_held(record("a", "2"), t0 + Duration::from_secs(28)));
        assert!(
            !e.still_held(record("a", "2"), t0 + Duration::from_secs(29)),
            "unchanged for 15 s"
        );
        assert!(!e.still_held(None, t0), "released");
    }

    #[tokio::test]
    async fn the_renew_deadline_ends_well_before_a_standby_may_take_over() {
        let e = election(15);
        assert_eq!(e.retry_period(), Duration::from_secs(2));
        assert_eq!(e.renew_deadline(), Duration::from_secs(10));
        assert!(e.renew_deadline() + e.retry_period() < e.duration);
    }

    #[test]
    fn a_fence_is_open_until_its_deadline_and_closed_for_good_once_closed() {
        let fence = fence::Fence::default();
        assert!(!fence.is_open(), "closed before any Lease was won");
        fence.open_until(Instant::now() + Duration::from_secs(60));
        assert!(fence.is_open());
        fence.open_until(Instant::now());
        assert!(!fence.is_open(), "past its deadline");
        fence.open_until(Instant::now() + Duration::from_secs(60));
        fence.close();
        assert!(!fence.is_open(), "closed for good");
    }
}

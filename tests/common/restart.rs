//! Restarting the in-process operator: the running controller shuts down gracefully and a fresh
//! one (empty memory, same settings) starts, as after a crash, a new operator Pod or a leader
//! change.

use std::sync::OnceLock;

use tokio::sync::watch;

/// Restarts asked for, and controllers started, since the test binary began.
struct Counters {
    asked: watch::Sender<u64>,
    started: watch::Sender<u64>,
}

fn counters() -> &'static Counters {
    static COUNTERS: OnceLock<Counters> = OnceLock::new();
    COUNTERS.get_or_init(|| Counters {
        asked: watch::channel(0).0,
        started: watch::channel(0).0,
    })
}

/// The shutdown future for one controller run: completes at the next [`restart_operator`].
pub(super) fn shutdown_signal() -> impl Future<Output = ()> + Send + Sync + 'static {
    let mut asked = counters().asked.subscribe();
    async move {
        let _ = asked.changed().await;
    }
}

/// Called by the operator thread each time it starts a controller.
pub(super) fn started() {
    counters().started.send_modify(|n| *n += 1);
}

/// Stops the running operator and waits until a fresh one has started.
pub async fn restart_operator() {
    let mut started = counters().started.subscribe();
    // A controller asked to stop before its first listing of VaultSecrets never stops: kube's
    // controller holds its runner until the cache is ready, and shutting down stops the listing.
    super::within("the operator to be ready before it restarts", async {
        while super::operator::running().get("/readyz").await.0 != 200 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    let next = *started.borrow_and_update() + 1;
    counters().asked.send_modify(|n| *n += 1);
    super::within("the operator to restart", started.wait_for(|n| *n >= next))
        .await
        .expect("the operator thread is running");
}

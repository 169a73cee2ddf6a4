//! OpenBao goes away and comes back: the Secret is kept, the status says why, and the operator
//! recovers on its own. A binary of its own, since it stops the environment's OpenBao; its tests
//! take turns ([`OUTAGE`]).

#![allow(clippy::expect_used, clippy::panic)] // test helpers fail loudly on purpose

#[path = "../common/mod.rs"]
mod common;

mod leases;
mod owed;
mod rate_limit;

use serde_json::json;
use tokio::sync::Mutex;

use common::{TestNs, has_value};

/// One outage at a time.
static OUTAGE: Mutex<()> = Mutex::const_new(());

#[tokio::test]
async fn openbao_stopped_keeps_the_secret_and_recovers_without_operator_restart() {
    let _turn = OUTAGE.lock().await;
    let t = TestNs::new("outage").await;
    t.op.bao.put(&t.path("svc"), &[("password", "survives")]);
    let spec = json!({"sources": [{"kv": {"mount": "secret", "path": t.path("svc")}}], "refresh": {"interval": "10s"}});
    t.create_vs("svc", spec).await.expect("create VaultSecret");
    let before = t
        .wait_secret("svc", "first sync", has_value("password", "survives"))
        .await;
    t.wait_ready("svc", "True", "Synced").await;

    t.op.env.stop_openbao().expect("stop OpenBao");
    let vs = t.wait_ready("svc", "False", "VaultUnavailable").await;
    let message = vs
        .status
        .and_then(|s| s.ready().map(|c| c.message.clone()))
        .expect("message");
    assert!(message.contains("keeps its last synced content"), "{message}");
    let during = t.secrets().get("svc").await.expect("get Secret");
    assert_eq!(
        during.metadata.resource_version, before.metadata.resource_version,
        "Secret changed during the outage"
    );
    assert_eq!(during.data, before.data);

    t.op.env.start_openbao().expect("start OpenBao");
    t.wait_ready("svc", "True", "Synced").await;
    let after = t.secrets().get("svc").await.expect("get Secret");
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "recovery rewrote an unchanged Secret"
    );
}

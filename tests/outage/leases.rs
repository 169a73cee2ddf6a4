//! Leases through an OpenBao outage: the Secret keeps its credentials, the status says Stale with
//! the lease's expiry, and the same lease is renewed once OpenBao is back; a deletion during an
//! outage is not held and its lease is revoked when OpenBao is back; a lease OpenBao refuses to
//! revoke is reported abandoned.

use std::time::Duration;

use kube::ResourceExt;
use kube::api::DeleteParams;
use kube::runtime::wait::{await_condition, conditions};
use serde_json::json;
use vaultsync::api::{LeaseStatus, VaultSecret};

use crate::OUTAGE;
use crate::common::{TestNs, auth, db, poll_for, value, within_for};

/// The lease of the (only, unnamed) source.
fn lease(vs: &VaultSecret) -> LeaseStatus {
    db::lease(vs, "0")
}

async fn wait_vs(t: &TestNs, what: &str, cond: impl Fn(&VaultSecret) -> bool) -> VaultSecret {
    t.wait_vs_for("app", Duration::from_secs(60), what, cond).await
}

fn ready_reason(vs: &VaultSecret) -> (String, String) {
    let c = vs.status.as_ref().and_then(|s| s.ready()).expect("Ready condition");
    (c.reason.clone(), c.message.clone())
}

#[tokio::test]
async fn a_lease_outlives_an_outage_shorter_than_its_ttl_and_is_renewed_after_it() {
    let _turn = OUTAGE.lock().await;
    let t = TestNs::new("lease-outage").await;
    let bao = &t.op.bao;
    let path = db::role(bao, &t.ns, "45s", "10m");
    let spec = json!({"sources": [{"dynamic": {"mount": db::MOUNT, "path": path}}]});
    t.create_vs("app", spec).await.expect("create VaultSecret");
    let first = lease(&t.wait_ready("app", "True", "Synced").await);
    let before = t.secrets().get("app").await.expect("Secret");
    let (user, password) = (
        value(&before, "username").expect("username"),
        value(&before, "password").expect("password"),
    );

    t.op.env.stop_openbao().expect("stop OpenBao");
    let stale = wait_vs(&t, "Ready=False Stale at the renewal deadline", |vs| {
        ready_reason(vs).0 == "Stale"
    })
    .await;
    let (_, message) = ready_reason(&stale);
    assert!(
        message.contains(&format!("valid until {}", first.expiry.0)),
        "the Stale message should give the lease's expiry: {message}"
    );
    let during = t.secrets().get("app").await.expect("Secret");
    assert_eq!(
        during.data, before.data,
        "the Secret lost its credentials during the outage"
    );
    t.op.env.start_openbao().expect("start OpenBao");

    let renewed = wait_vs(&t, "the same lease renewed after the outage", |vs| {
        ready_reason(vs).0 == "Synced" && lease(vs).expiry.0 > first.expiry.0
    })
    .await;
    assert_eq!(
        lease(&renewed).id,
        first.id,
        "new credentials were issued although the lease was valid"
    );
    assert!(
        jiff::Timestamp::now() < first.expiry.0,
        "the test's outage outlasted the lease"
    );
    let after = t.secrets().get("app").await.expect("Secret");
    assert_eq!(after.metadata.resource_version, before.metadata.resource_version);
    assert_eq!(db::issued(bao, &path), 1);
    assert!(db::logs_in(bao, &user, &password));
}

#[tokio::test]
async fn a_deletion_during_an_outage_is_not_held_and_the_lease_is_revoked_when_openbao_is_back() {
    let _turn = OUTAGE.lock().await;
    let t = TestNs::new("lease-outage-delete").await;
    let bao = &t.op.bao;
    let path = db::role(bao, &t.ns, "5m", "10m");
    let spec = json!({"sources": [{"dynamic": {"mount": db::MOUNT, "path": path}}]});
    t.create_vs("app", spec).await.expect("create VaultSecret");
    let first = lease(&t.wait_ready("app", "True", "Synced").await);
    let uid = t.vaultsecrets().get("app").await.expect("get").uid().expect("uid");

    t.op.env.stop_openbao().expect("stop OpenBao");
    t.vaultsecrets()
        .delete("app", &DeleteParams::default())
        .await
        .expect("delete VaultSecret");
    within_for(
        Duration::from_secs(30),
        "the VaultSecret to be deleted despite the outage",
        await_condition(t.vaultsecrets(), "app", conditions::is_deleted(&uid)),
    )
    .await
    .expect("watch");
    let deferred = t.event("LeasesRevocationDeferred").await;
    assert_eq!(deferred.type_.as_deref(), Some("Warning"));
    let note = deferred.message.unwrap_or_default();
    assert!(note.contains("vaultsync-owed-revocations"), "{note}");
    t.op.env.start_openbao().expect("start OpenBao");

    // Revoked with the operator's own token, which issued it (this VaultSecret had no spec.auth).
    poll_for("the owed lease to be revoked", Duration::from_secs(90), async || {
        (!db::lease_exists(bao, &first.id)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_lease_vault_refuses_to_revoke_is_abandoned_with_a_log_line_a_metric_and_a_warning() {
    let _turn = OUTAGE.lock().await;
    let t = TestNs::new("lease-refused").await;
    let bao = &t.op.bao;
    auth::setup(t.op);
    let path = db::role(bao, &t.ns, "5m", "10m");
    // May issue and renew, not revoke.
    let policy = format!(
        "path \"{}/{path}\" {{ capabilities = [\"read\"] }}\n\
         path \"sys/leases/renew\" {{ capabilities = [\"update\"] }}\n",
        db::MOUNT
    );
    bao.run(&[
        "write",
        &format!("sys/policies/acl/{}", t.ns),
        &format!("policy={policy}"),
    ]);
    auth::kubernetes_role(bao, &t.ns, &t.ns, "app", &t.ns, &[]);
    t.create_service_account("app").await;
    let spec = json!({
        "auth": {"kubernetes": {"role": t.ns, "serviceAccountName": "app"}},
        "sources": [{"dynamic": {"mount": db::MOUNT, "path": path}}],
    });
    t.create_vs("app", spec).await.expect("create VaultSecret");
    let first = lease(&t.wait_ready("app", "True", "Synced").await);
    t.delete_vs("app").await;

    let warning = t.event("LeasesNotRevoked").await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    let note = warning.message.unwrap_or_default();
    assert!(note.contains(&first.id) && note.contains("permission denied"), "{note}");
    assert!(db::lease_exists(bao, &first.id), "the lease is left to expire");
    let logs = crate::common::captured_logs();
    assert!(
        logs.lines().any(|l| l.contains("abandoned") && l.contains(&first.id)),
        "no log line names the abandoned lease"
    );
    let (_, metrics) = t.op.get("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("vaultsync_lease_revocations_total{result=\"abandoned\"}")),
        "no abandoned-lease metric"
    );
    bao.run(&["lease", "revoke", &first.id]);
}

//! Issue, renewal, rotation before the max TTL, revocation after the grace period.

use std::time::Duration;

use jiff::SignedDuration;
use kube::runtime::wait::await_condition;
use serde_json::json;

use crate::common::{TestNs, db, within_for};
use crate::{assert_not_leaked, creds, db_spec, lease, synced};

#[tokio::test]
async fn credentials_log_in_are_renewed_then_rotated_before_max_ttl_and_the_old_ones_revoked() {
    let t = TestNs::new("lease-life").await;
    let bao = &t.op.bao;
    let path = db::role(bao, &t.ns, "10s", "40s");
    let spec = db_spec(&path, json!({"revokeGracePeriod": "2s"}));
    t.create_vs("app", spec).await.expect("create VaultSecret");
    let ((user1, pw1), first) = synced(&t, "app").await;
    assert!(first.id.starts_with(&format!("database/{path}/")), "{}", first.id);
    assert!(first.renewable);
    assert!(db::logs_in(bao, &user1, &pw1), "the synced credentials do not log in");

    // Renewed: same lease, its expiry moves, the Secret keeps the same user.
    let renewed = t
        .wait_vs_for("app", Duration::from_secs(20), "a renewal", |vs| {
            let l = lease(vs);
            l.id == first.id && l.expiry.0 > first.expiry.0
        })
        .await;
    assert_eq!(lease(&renewed).issued, first.issued);
    assert_eq!(creds(&t.secrets().get("app").await.expect("Secret")).0, user1);
    let metrics = t.op.get("/metrics").await.1;
    assert!(
        metrics.contains(&format!(
            "vaultsync_secret_expiry_timestamp_seconds{{name=\"app\",namespace=\"{}\"}}",
            t.ns
        )),
        "no expiry series for the VaultSecret"
    );
    assert!(metrics.contains("vaultsync_lease_renewals_total{result=\"success\"}"));

    // Rotated before the 40 s max TTL: a new user that logs in.
    let rotated = within_for(
        Duration::from_secs(60),
        "rotation to a new user",
        await_condition(t.secrets(), "app", |s: Option<&k8s_openapi::api::core::v1::Secret>| {
            s.is_some_and(|s| creds(s).0 != user1)
        }),
    )
    .await
    .expect("watch Secret")
    .expect("Secret exists");
    let (user2, pw2) = creds(&rotated);
    assert!(db::logs_in(bao, &user2, &pw2), "the rotated credentials do not log in");
    let vs = t.vaultsecrets().get("app").await.expect("get VaultSecret");
    let second = lease(&vs);
    assert_ne!(second.id, first.id);
    assert!(
        second.issued.0 < first.issued.0 + SignedDuration::from_secs(40),
        "rotated at {} for a lease issued at {} with a 40 s max TTL",
        second.issued.0,
        first.issued.0
    );
    assert!(
        db::logs_in(bao, &user1, &pw1),
        "the old user must keep working during the grace period"
    );

    // The old lease is revoked after the grace period, before it would have expired.
    db::wait_login_refused(bao, &user1, &pw1, Duration::from_secs(20)).await;
    let refused_at = jiff::Timestamp::now();
    assert!(!db::lease_exists(bao, &first.id), "the old lease still exists");
    assert!(
        refused_at < first.issued.0 + SignedDuration::from_secs(40),
        "the old user stopped working only at its max TTL ({refused_at}): it expired, it was not revoked"
    );
    assert!(
        db::logs_in(bao, &user2, &pw2),
        "revoking the old lease broke the new one"
    );
    t.wait_vs_for("app", Duration::from_secs(10), "no pending revocation", |vs| {
        vs.status.as_ref().is_some_and(|s| s.pending_revocations.is_empty())
    })
    .await;
    let metrics = t.op.get("/metrics").await.1;
    assert!(metrics.contains("vaultsync_lease_revocations_total{result=\"success\"}"));
    assert_not_leaked(&t, &[&pw1, &pw2]).await;
    t.delete_vs("app").await;
}

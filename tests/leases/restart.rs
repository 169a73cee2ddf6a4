//! A restarted operator keeps and renews the lease it had: no new credentials, no rewrite.

use std::time::Duration;

use serde_json::json;

use crate::common::{TestNs, db, restart_operator};
use crate::{db_spec, lease, synced};

#[tokio::test]
async fn a_restarted_operator_renews_the_same_lease_and_issues_none() {
    let t = TestNs::new("lease-restart").await;
    let bao = &t.op.bao;
    let path = db::role(bao, &t.ns, "12s", "10m");
    t.create_vs("app", db_spec(&path, json!({})))
        .await
        .expect("create VaultSecret");
    let ((user, password), first) = synced(&t, "app").await;
    let before = t.secrets().get("app").await.expect("Secret");
    assert_eq!(db::issued(bao, &path), 1, "one lease for one VaultSecret");

    restart_operator().await;
    let after_restart = lease(&t.vaultsecrets().get("app").await.expect("VaultSecret"));
    let renewed = t
        .wait_vs_for("app", Duration::from_secs(30), "a renewal after the restart", |vs| {
            let l = lease(vs);
            l.id == first.id && l.expiry.0 > after_restart.expiry.0
        })
        .await;

    assert_eq!(lease(&renewed).id, first.id);
    assert_eq!(
        db::issued(bao, &path),
        1,
        "the restarted operator issued new credentials"
    );
    let after = t.secrets().get("app").await.expect("Secret");
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "the Secret was rewritten after the restart"
    );
    assert!(
        db::logs_in(bao, &user, &password),
        "the kept credentials stopped working"
    );
}

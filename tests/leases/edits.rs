//! Spec edits: only a change of the request issues new credentials.

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::common::{TestNs, db};
use crate::{creds, db_spec, lease, synced};

#[tokio::test]
async fn an_edit_that_keeps_the_request_keeps_the_lease_and_a_path_change_replaces_it() {
    let t = TestNs::new("lease-edit").await;
    let bao = &t.op.bao;
    let first_path = db::role(bao, &format!("{}-a", t.ns), "5m", "10m");
    let second_path = db::role(bao, &format!("{}-b", t.ns), "5m", "10m");
    t.create_vs("app", db_spec(&first_path, json!({"revokeGracePeriod": "1s"})))
        .await
        .expect("create VaultSecret");
    let ((user, password), first) = synced(&t, "app").await;

    // Annotations on the VaultSecret and the Secret, and another renewal percentage.
    let edit = json!({
        "metadata": {"annotations": {"team": "payments"}},
        "spec": {"destination": {"annotations": {"owner": "payments"}}, "refresh": {"renewalPercent": 50}},
    });
    t.vaultsecrets()
        .patch("app", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .expect("edit VaultSecret");
    t.wait_secret(
        "app",
        "the new Secret annotation",
        |s: Option<&k8s_openapi::api::core::v1::Secret>| {
            s.is_some_and(|s| s.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("owner")))
        },
    )
    .await;
    let vs = t
        .wait_vs_for("app", Duration::from_secs(30), "the edit observed", |vs| {
            vs.status.as_ref().and_then(|s| s.observed_generation) == vs.metadata.generation
        })
        .await;
    assert_eq!(
        lease(&vs).id,
        first.id,
        "an edit that keeps the request replaced the lease"
    );
    assert_eq!(creds(&t.secrets().get("app").await.expect("Secret")).0, user);
    assert_eq!(db::issued(bao, &first_path), 1);

    // A new path: new credentials, and the old lease revoked after the grace period.
    let edit = json!({"spec": {"sources": [{"name": "db", "dynamic": {"mount": db::MOUNT, "path": second_path}}]}});
    t.vaultsecrets()
        .patch("app", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .expect("edit VaultSecret");
    let vs = t
        .wait_vs_for("app", Duration::from_secs(30), "a lease for the new path", |vs| {
            lease(vs).id.starts_with(&format!("database/{second_path}/"))
        })
        .await;
    let secret = t.secrets().get("app").await.expect("Secret");
    let (new_user, new_password) = creds(&secret);
    assert_ne!(new_user, user);
    assert!(db::logs_in(bao, &new_user, &new_password));
    db::wait_login_refused(bao, &user, &password, Duration::from_secs(20)).await;
    assert!(
        !db::lease_exists(bao, &first.id),
        "the lease of the old path was not revoked"
    );
    assert!(lease(&vs).id != first.id);
}

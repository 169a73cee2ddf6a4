//! Deleting a VaultSecret revokes its lease when `revokeOnDelete` is on (the default), and
//! leaves it to expire when off.

use std::time::Duration;

use kube::ResourceExt;
use kube::api::DeleteParams;
use kube::runtime::wait::{await_condition, conditions};
use serde_json::json;
use vaultsync::api::VaultSecret;

use crate::common::{TestNs, db, within};
use crate::{db_spec, synced};

#[tokio::test]
async fn deletion_revokes_the_lease_unless_revoke_on_delete_is_false() {
    let t = TestNs::new("lease-delete").await;
    let bao = &t.op.bao;
    let path = db::role(bao, &t.ns, "5m", "10m");
    t.create_vs("revoked", db_spec(&path, json!({})))
        .await
        .expect("create VaultSecret");
    t.create_vs("kept", db_spec(&path, json!({"revokeOnDelete": false})))
        .await
        .expect("create VaultSecret");
    let ((user_r, pw_r), lease_r) = synced(&t, "revoked").await;
    let ((user_k, pw_k), lease_k) = synced(&t, "kept").await;
    let finalizers = |vs: &VaultSecret| vs.finalizers().to_vec();
    assert_eq!(
        finalizers(&t.vaultsecrets().get("revoked").await.expect("get")),
        ["vaultsync.dev/revoke-leases"]
    );
    assert!(finalizers(&t.vaultsecrets().get("kept").await.expect("get")).is_empty());

    for name in ["revoked", "kept"] {
        let vs = t.vaultsecrets().get(name).await.expect("get");
        t.vaultsecrets()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete VaultSecret");
        let uid = vs.uid().expect("uid");
        within(
            &format!("{name} to be deleted"),
            await_condition(t.vaultsecrets(), name, conditions::is_deleted(&uid)),
        )
        .await
        .expect("watch");
    }

    // Revocation happens before the finalizer is released, so it is done by now.
    assert!(
        !db::lease_exists(bao, &lease_r.id),
        "the lease of the deleted VaultSecret was not revoked"
    );
    db::wait_login_refused(bao, &user_r, &pw_r, Duration::from_secs(5)).await;
    assert!(
        db::lease_exists(bao, &lease_k.id),
        "revokeOnDelete: false revoked the lease"
    );
    assert!(
        db::logs_in(bao, &user_k, &pw_k),
        "revokeOnDelete: false broke the credentials"
    );
}

//! Leased credentials: a rotation of database credentials restarts the Deployment using them once;
//! renewals (same credentials) restart nothing, and neither does the first sync.

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;
use vaultsync::rollout::key_for;

use crate::common::db;
use crate::workloads::{
    create, env_from, get, hash, ns, replica_sets, resource, vaultsync_annotations, wait_new_hash, wait_rolled,
};

#[tokio::test]
async fn a_lease_rotation_rolls_the_deployment_once_and_renewals_roll_nothing() {
    let t = ns("lease-roll").await;
    let path = db::role(&t.op.bao, &t.ns, "10s", "20s");
    create::<Deployment>(&t, "api", env_from(&["api-db"]), json!({})).await;
    let spec = json!({
        "sources": [{"name": "db", "dynamic": {"mount": db::MOUNT, "path": path}}],
        "destination": {"name": "api-db"},
        "refresh": {"revokeGracePeriod": "30s"},
        "rollout": {"targets": [{"kind": "Deployment", "name": "api"}]},
    });
    t.create_vs("api", spec).await.expect("create VaultSecret");
    let synced = t.wait_ready("api", "True", "Synced").await;
    let first = hash(&synced);
    let lease_id = |vs: &vaultsync::api::VaultSecret| db::lease(vs, "db").id;
    let first_lease = lease_id(&synced);
    let deployments = resource::<Deployment>();
    assert!(
        vaultsync_annotations(&get(&t, &deployments, "api").await).is_empty(),
        "the first sync rolled"
    );

    // Renewed at ~6.7 s (same credentials), rotated at ~13 s when renewal is capped by the 20 s max TTL.
    let second = wait_new_hash(&t, "api", &first).await;
    let vs = t.vaultsecrets().get("api").await.expect("VaultSecret");
    assert_ne!(
        lease_id(&vs),
        first_lease,
        "the content changed because the lease was replaced"
    );
    let rolled = wait_rolled(&t, &deployments, "api", &key_for("api-db"), &second).await;
    assert_eq!(
        rolled.metadata.generation,
        Some(2),
        "one change of the pod template for one rotation"
    );
    assert_eq!(replica_sets(&t, "api").await, 2, "exactly one new ReplicaSet");
    t.delete_vs("api").await;
}

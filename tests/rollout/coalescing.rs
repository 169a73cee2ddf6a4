//! Changes that reach one workload within the debounce window restart it once.

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;
use vaultsync::rollout::key_for;

use crate::workloads::{
    create, env_from, hash, ns, replica_sets, resource, spec, wait_new_hash, wait_rolled, wait_rollout_condition,
};

#[tokio::test]
async fn three_vaultsecrets_rotating_together_make_one_new_replicaset() {
    let t = ns("coalesce").await;
    let names = ["db", "cache", "queue"];
    create::<Deployment>(&t, "shop", env_from(&names), json!({})).await;
    // Each VaultSecret notices the change at its own refresh, up to 10 s apart: a 15 s window
    // holds them all.
    let rollout = json!({"targets": [{"kind": "Deployment", "name": "shop"}], "debounce": "15s"});
    let mut hashes = Vec::new();
    for name in names {
        t.op.bao.put(&t.path(name), &[("password", "v1")]);
        t.create_vs(name, spec(&t.path(name), rollout.clone()))
            .await
            .expect("create VaultSecret");
    }
    for name in names {
        hashes.push(hash(&t.wait_ready(name, "True", "Synced").await));
    }

    for name in names {
        t.op.bao.put(&t.path(name), &[("password", "v2")]);
    }
    let mut rolled = None;
    for (name, old) in names.iter().zip(&hashes) {
        let new = wait_new_hash(&t, name, old).await;
        rolled = Some(wait_rolled(&t, &resource::<Deployment>(), "shop", &key_for(name), &new).await);
    }
    let rolled = rolled.expect("three VaultSecrets");
    assert_eq!(
        rolled.metadata.generation,
        Some(2),
        "one patch carried all three changes"
    );
    assert_eq!(replica_sets(&t, "shop").await, 2, "exactly one new ReplicaSet");
    for name in names {
        wait_rollout_condition(&t, name, "True", "Restarted").await;
    }
}

#[tokio::test]
async fn one_change_noticed_makes_its_siblings_read_at_once_so_the_workload_restarts_once() {
    // A refresh interval of an hour: the three refresh phases lie far apart, and only the
    // sibling nudge can bring the other two changes into the first one's debounce window.
    let t = ns("siblings").await;
    let names = ["db", "cache", "queue"];
    create::<Deployment>(&t, "shop", env_from(&names), json!({})).await;
    let rollout = json!({"targets": [{"kind": "Deployment", "name": "shop"}], "debounce": "5s"});
    let mut hashes = Vec::new();
    for name in names {
        t.op.bao.put(&t.path(name), &[("password", "v1")]);
        let mut spec = spec(&t.path(name), rollout.clone());
        spec["refresh"] = json!({"interval": "1h"});
        t.create_vs(name, spec).await.expect("create VaultSecret");
    }
    for name in names {
        hashes.push(hash(&t.wait_ready(name, "True", "Synced").await));
    }

    for name in names {
        t.op.bao.put(&t.path(name), &[("password", "v2")]);
    }
    // Only `db` learns of its change (as at its refresh).
    t.kubectl(&["annotate", "vsec", "db", "vaultsync.dev/sync-requested=now"]);
    let mut rolled = None;
    for (name, old) in names.iter().zip(&hashes) {
        let new = wait_new_hash(&t, name, old).await;
        rolled = Some(wait_rolled(&t, &resource::<Deployment>(), "shop", &key_for(name), &new).await);
    }
    let rolled = rolled.expect("three VaultSecrets");
    assert_eq!(
        rolled.metadata.generation,
        Some(2),
        "one patch carried all three changes"
    );
    assert_eq!(replica_sets(&t, "shop").await, 2, "exactly one new ReplicaSet");
}

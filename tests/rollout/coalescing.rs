//! Changes that reach one workload within the debounce window restart it once.

#![allow(clippy::expect_used)] // test support: failing loudly is the point

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};
use vaultsync::rollout::key_for;

use crate::common::TestNs;
use crate::workloads::{
    create, env_from, hash, ns, replica_sets, resource, spec, wait_new_hash, wait_rolled, wait_rollout_condition,
};

const NAMES: [&str; 3] = ["db", "cache", "queue"];

/// Deployment `shop` fed by VaultSecrets [`NAMES`] (password `v1`) restarting it after
/// `debounce`, each refreshing every `interval`; returns their synced `secretHash`es.
async fn three_feeding_shop(t: &TestNs, debounce: &str, interval: &str) -> Vec<String> {
    create::<Deployment>(t, "shop", env_from(&NAMES), json!({})).await;
    let rollout = json!({"targets": [{"kind": "Deployment", "name": "shop"}], "debounce": debounce});
    for name in NAMES {
        t.op.bao.put(&t.path(name), &[("password", "v1")]);
        let mut spec: Value = spec(&t.path(name), rollout.clone());
        spec["refresh"] = json!({"interval": interval});
        t.create_vs(name, spec).await.expect("create VaultSecret");
    }
    let mut hashes = Vec::new();
    for name in NAMES {
        hashes.push(hash(&t.wait_ready(name, "True", "Synced").await));
    }
    hashes
}

/// Waits until each VaultSecret has new content and `shop` was restarted with all three, then
/// checks it took one patch and one new ReplicaSet.
async fn assert_one_restart_with_all_three(t: &TestNs, hashes: &[String]) {
    let mut rolled = None;
    for (name, old) in NAMES.iter().zip(hashes) {
        let new = wait_new_hash(t, name, old).await;
        rolled = Some(wait_rolled(t, &resource::<Deployment>(), "shop", &key_for(name), &new).await);
    }
    let rolled = rolled.expect("three VaultSecrets");
    assert_eq!(
        rolled.metadata.generation,
        Some(2),
        "one patch carried all three changes"
    );
    assert_eq!(replica_sets(t, "shop").await, 2, "exactly one new ReplicaSet");
}

#[tokio::test]
async fn three_vaultsecrets_rotating_together_make_one_new_replicaset() {
    let t = ns("coalesce").await;
    // Each VaultSecret notices the change at its own refresh, up to 10 s apart: a 15 s window
    // holds them all.
    let hashes = three_feeding_shop(&t, "15s", "10s").await;
    for name in NAMES {
        t.op.bao.put(&t.path(name), &[("password", "v2")]);
    }
    assert_one_restart_with_all_three(&t, &hashes).await;
    for name in NAMES {
        wait_rollout_condition(&t, name, "True", "Restarted").await;
    }
}

#[tokio::test]
async fn one_change_noticed_makes_its_siblings_read_at_once_so_the_workload_restarts_once() {
    // A refresh interval of an hour: the three refresh phases lie far apart, and only the
    // sibling nudge can bring the other two changes into the first one's debounce window.
    let t = ns("siblings").await;
    let hashes = three_feeding_shop(&t, "5s", "1h").await;
    for name in NAMES {
        t.op.bao.put(&t.path(name), &[("password", "v2")]);
    }
    // Only `db` learns of its change (as at its refresh).
    t.kubectl(&["annotate", "vsec", "db", "vaultsync.dev/sync-requested=now"]);
    assert_one_restart_with_all_three(&t, &hashes).await;
}

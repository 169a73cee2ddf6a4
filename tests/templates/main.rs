//! End-to-end tests of Secret shaping (templates, key mapping, envFrom-ready keys) against a real
//! kube-apiserver + OpenBao. One environment and one operator serve every test here; each test
//! works in a namespace of its own.

#![allow(clippy::panic, clippy::expect_used)] // test helpers fail loudly on purpose

#[path = "../common/mod.rs"]
mod common;

mod compose;
mod envkeys;
mod failures;
mod limits;

use kube::api::{Patch, PatchParams};
use serde_json::Value;

use common::TestNs;

/// Merge-patches the VaultSecret's spec.
async fn patch_spec(t: &TestNs, name: &str, spec: Value) {
    t.vaultsecrets()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "spec": spec })),
        )
        .await
        .unwrap_or_else(|e| panic!("patch VaultSecret {name}: {e}"));
}

/// The Ready condition's message.
fn ready_message(vs: &vaultsync::api::VaultSecret) -> String {
    vs.status
        .as_ref()
        .and_then(|s| s.ready().map(|c| c.message.clone()))
        .unwrap_or_default()
}

/// Every Event in the test's namespace, as JSON text.
async fn events_json(t: &TestNs) -> String {
    let events = kube::Api::<k8s_openapi::api::core::v1::Event>::namespaced(t.client.clone(), &t.ns)
        .list(&Default::default())
        .await
        .expect("list events");
    serde_json::to_string(&events.items).expect("events json")
}

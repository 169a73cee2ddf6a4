//! Leased sources end to end: dynamic PostgreSQL credentials from OpenBao's database engine,
//! checked by logging in to the environment's PostgreSQL. One environment and one in-process
//! operator for the binary; each test has a namespace and a database role of its own.

#![allow(clippy::panic, clippy::expect_used)] // test helpers fail loudly on purpose

#[path = "../common/mod.rs"]
mod common;

mod deletion;
mod edits;
mod lifecycle;
mod pki;
mod restart;
mod tokens;

use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use vaultsync::api::{LeaseStatus, VaultSecret};

use common::{TestNs, captured_logs, db, value};

/// A VaultSecret spec reading database credentials at `path` as source `db`.
fn db_spec(path: &str, refresh: Value) -> Value {
    json!({
        "sources": [{"name": "db", "dynamic": {"mount": db::MOUNT, "path": path}}],
        "refresh": refresh,
    })
}

/// The lease of source `db` in `vs`'s status.
fn lease(vs: &VaultSecret) -> LeaseStatus {
    db::lease(vs, "db")
}

/// Username and password in `secret`.
fn creds(secret: &Secret) -> (String, String) {
    let get = |key| value(secret, key).unwrap_or_else(|| panic!("Secret has no {key}"));
    (get("username"), get("password"))
}

/// Waits until the VaultSecret `name` has synced credentials, and returns them with the lease.
async fn synced(t: &TestNs, name: &str) -> ((String, String), LeaseStatus) {
    let vs = t.wait_ready(name, "True", "Synced").await;
    let secret = t.secrets().get(name).await.expect("get Secret");
    (creds(&secret), lease(&vs))
}

/// Asserts that none of `values` appears in the operator's logs, in any Event, or in any
/// VaultSecret status.
async fn assert_not_leaked(t: &TestNs, values: &[&str]) {
    let events = Api::<Event>::all(t.client.clone())
        .list(&ListParams::default())
        .await
        .expect("list Events");
    let statuses = Api::<VaultSecret>::all(t.client.clone())
        .list(&ListParams::default())
        .await
        .expect("list VaultSecrets");
    let statuses: Vec<_> = statuses.items.iter().map(|vs| &vs.status).collect();
    let places = [
        ("the operator's logs", captured_logs()),
        ("an Event", serde_json::to_string(&events.items).expect("Events")),
        (
            "a VaultSecret status",
            serde_json::to_string(&statuses).expect("statuses"),
        ),
    ];
    for (place, text) in &places {
        for needle in values {
            assert!(!text.contains(needle), "a credential appears in {place}");
        }
    }
}

//! The Argo CD health check shipped in `config/argocd/`: run by a real Lua (Argo CD runs it in
//! gopher-lua with the object as `obj`) on VaultSecrets in each state, and the same script in the
//! `argocd-cm` patch. `tests/e2e/argocd.rs` runs it on statuses the operator wrote.

#![allow(clippy::expect_used, clippy::panic)]

#[path = "common/argocd.rs"]
mod argocd;

use argocd::{SCRIPT, health};
use serde_json::{Value, json};

const CONFIGMAP: &str = include_str!("../config/argocd/argocd-cm.yaml");
const KEY: &str = "resource.customizations.health.vaultsync.dev_VaultSecret";

fn vaultsecret(generation: i64, status: Value) -> Value {
    json!({
        "apiVersion": "vaultsync.dev/v1alpha1", "kind": "VaultSecret",
        "metadata": {"name": "shop", "namespace": "shop", "generation": generation},
        "spec": {"sources": [{"kv": {"mount": "secret", "path": "shop"}}]},
        "status": status,
    })
}

fn ready(status: &str, reason: &str, message: &str) -> Value {
    json!({
        "observedGeneration": 1,
        "conditions": [
            {"type": "RolloutRestart", "status": "True", "reason": "Restarted", "message": "Restarted Deployment shop"},
            {"type": "Ready", "status": status, "reason": reason, "message": message},
        ],
    })
}

#[test]
fn a_failing_vaultsecret_is_degraded_a_synced_one_healthy_and_a_new_or_changed_one_progressing() {
    let unsynced = json!({
        "apiVersion": "vaultsync.dev/v1alpha1", "kind": "VaultSecret",
        "metadata": {"name": "shop", "namespace": "shop", "generation": 1},
        "spec": {"sources": [{"kv": {"mount": "secret", "path": "shop"}}]},
    });
    assert_eq!(health(&unsynced).0, "Progressing");

    let synced = vaultsecret(1, ready("True", "Synced", "Secret shop is in sync with 1 source(s)"));
    assert_eq!(
        health(&synced),
        (
            "Healthy".into(),
            "Synced: Secret shop is in sync with 1 source(s)".into()
        )
    );

    let message = "secret/data/shop not found in Vault; the Secret keeps its last synced content";
    let failing = vaultsecret(1, ready("False", "NotFound", message));
    assert_eq!(health(&failing), ("Degraded".into(), format!("NotFound: {message}")));

    // Edited after the last sync: the status describes the previous spec.
    let edited = vaultsecret(2, ready("True", "Synced", "in sync"));
    assert_eq!(health(&edited).0, "Progressing");
}

#[test]
fn the_argocd_cm_patch_carries_the_tested_script() {
    let patch: serde_yaml::Value = serde_yaml::from_str(CONFIGMAP).expect("YAML");
    let shipped = patch["data"][KEY].as_str().expect("the health check key");
    let tested = std::fs::read_to_string(xtask::workspace_root().join(SCRIPT)).expect("health.lua");
    assert_eq!(shipped, tested, "config/argocd/argocd-cm.yaml differs from health.lua");
}

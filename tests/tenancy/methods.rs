//! Acceptance 5: AppRole and token-from-Secret logins sync; a rotated secret ID takes effect.

use std::time::Duration;

use serde_json::json;

use crate::common::auth::{
    approle_logins, approle_role, destroy_secret_id, new_secret_id, read_policy, token_with_policy,
};
use crate::common::within_for;
use crate::team::{ns, wait_synced};

#[tokio::test]
async fn approle_syncs_and_a_rotated_secret_id_takes_effect() {
    let t = ns("approle").await;
    let bao = &t.op.bao;
    read_policy(bao, &t.ns, &t.ns);
    let (role_id, old_secret_id) = approle_role(bao, &t.ns, &t.ns);
    t.apply_secret("approle", &[("secret-id", &old_secret_id)]).await;
    let path = t.path("db");
    bao.put(&path, &[("password", "approle-1")]);
    let spec = json!({
        "auth": {"appRole": {"roleId": role_id, "secretIdRef": {"name": "approle", "key": "secret-id"}}},
        "sources": [{"kv": {"mount": "secret", "path": path}}],
        "refresh": {"interval": "10s"},
    });
    t.create_vs("db", spec).await.expect("create VaultSecret");
    wait_synced(&t, "db", "password", "approle-1").await;
    t.wait_ready("db", "True", "Synced").await;

    // Rotate: the old secret ID is destroyed before the Secret changes, so every successful
    // login from here on used the new one.
    let logins_before = approle_logins(bao, &t.ns);
    let new_secret_id = new_secret_id(bao, &t.ns);
    destroy_secret_id(bao, &t.ns, &old_secret_id);
    t.apply_secret("approle", &[("secret-id", &new_secret_id)]).await;
    bao.put(&path, &[("password", "approle-2")]);
    wait_synced(&t, "db", "password", "approle-2").await;
    t.wait_ready("db", "True", "Synced").await;
    within_for(
        Duration::from_secs(10),
        "an AppRole login with the new secret ID (the old one is destroyed)",
        async {
            while approle_logins(bao, &t.ns) <= logins_before {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_token_from_a_secret_of_the_namespace_syncs() {
    let t = ns("token").await;
    let bao = &t.op.bao;
    read_policy(bao, &t.ns, &t.ns);
    let token = token_with_policy(bao, &t.ns);
    t.apply_secret("vault-token", &[("token", &token)]).await;
    let path = t.path("db");
    bao.put(&path, &[("password", "by-token")]);
    let spec = json!({
        "auth": {"token": {"secretRef": {"name": "vault-token", "key": "token"}}},
        "sources": [{"kv": {"mount": "secret", "path": path}}],
    });
    t.create_vs("db", spec).await.expect("create VaultSecret");
    wait_synced(&t, "db", "password", "by-token").await;
    t.wait_ready("db", "True", "Synced").await;
}

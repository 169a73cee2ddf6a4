//! Acceptance 2: a ServiceAccount that does not exist (yet) is reported, and its creation alone
//! makes the VaultSecret sync.

use serde_json::json;

use crate::common::auth::{kubernetes_role, read_policy};
use crate::team::{assert_no_secret, ns, wait_synced};

#[tokio::test]
async fn a_missing_service_account_is_reported_and_creating_it_makes_the_vaultsecret_sync() {
    let t = ns("late-sa").await;
    let bao = &t.op.bao;
    read_policy(bao, &t.ns, &t.ns);
    // The role already names the ServiceAccount that is created later.
    kubernetes_role(bao, &t.ns, &t.ns, "latecomer", &t.ns, &[]);
    bao.put(&t.path("cfg"), &[("url", "https://late.example")]);
    let spec = json!({
        "auth": {"kubernetes": {"role": t.ns, "serviceAccountName": "latecomer"}},
        "sources": [{"kv": {"mount": "secret", "path": t.path("cfg")}}],
    });
    t.create_vs("cfg", spec).await.expect("create VaultSecret");

    let vs = t.wait_ready("cfg", "False", "ServiceAccountNotFound").await;
    let message = vs
        .status
        .as_ref()
        .and_then(|s| s.ready().map(|c| c.message.clone()))
        .expect("message");
    assert!(
        message.contains("latecomer"),
        "the message names the missing ServiceAccount: {message}"
    );
    assert_no_secret(&t, "cfg").await;

    // Retried with backoff: the ServiceAccount's creation is enough, the VaultSecret stays as is.
    t.create_service_account("latecomer").await;
    wait_synced(&t, "cfg", "url", "https://late.example").await;
    let synced = t.wait_ready("cfg", "True", "Synced").await;
    assert_eq!(
        synced.metadata.generation, vs.metadata.generation,
        "the spec was changed"
    );
}

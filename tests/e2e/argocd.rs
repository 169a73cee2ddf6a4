//! The Argo CD health check on VaultSecrets as the operator wrote their status.

#![allow(clippy::expect_used)] // test support: failing loudly is the point

use serde_json::{Value, json};

use crate::common::TestNs;
use crate::common::argocd::health;

fn object(t: &TestNs, name: &str) -> Value {
    serde_json::from_str(&t.kubectl(&["get", "vaultsecret", name, "-o", "json"])).expect("JSON")
}

#[tokio::test]
async fn the_argocd_health_check_reads_the_statuses_the_operator_writes() {
    let t = TestNs::new("argocd").await;
    t.op.bao.put(&t.path("app"), &[("password", "p")]);
    let kv = |path: String| json!({"sources": [{"kv": {"mount": "secret", "path": path}}]});
    t.create_vs("good", kv(t.path("app")))
        .await
        .expect("create VaultSecret");
    t.create_vs("bad", kv(t.path("missing")))
        .await
        .expect("create VaultSecret");
    t.wait_ready("good", "True", "Synced").await;
    t.wait_ready("bad", "False", "NotFound").await;

    let (status, message) = health(&object(&t, "good"));
    assert_eq!(status, "Healthy", "{message}");
    assert!(message.starts_with("Synced: "), "{message}");
    let (status, message) = health(&object(&t, "bad"));
    assert_eq!(status, "Degraded", "{message}");
    assert!(message.starts_with("NotFound: "), "{message}");

    // Edited: Progressing until the operator has synced the new generation, Healthy after.
    t.kubectl(&[
        "patch",
        "vaultsecret",
        "good",
        "--type=merge",
        "-p",
        r#"{"spec":{"refresh":{"interval":"2h"}}}"#,
    ]);
    let edited = object(&t, "good");
    let synced = edited["status"]["observedGeneration"] == edited["metadata"]["generation"];
    let want = if synced { "Healthy" } else { "Progressing" };
    assert_eq!(health(&edited).0, want, "{edited}");
    crate::common::poll_for("the edit synced", std::time::Duration::from_secs(30), async || {
        let now = object(&t, "good");
        (now["status"]["observedGeneration"] == now["metadata"]["generation"]).then_some(())
    })
    .await;
    assert_eq!(health(&object(&t, "good")).0, "Healthy");
}

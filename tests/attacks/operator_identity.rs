//! The operator's own identity, in the one namespace allowed to use it, reads `kv` sources only:
//! no dynamic request (of any method) and no certificate is issued with it.

use serde_json::json;

use crate::address::rand_suffix;
use crate::common::has_value;
use crate::mallory_in_allowed_ns;

#[tokio::test]
async fn the_operators_identity_issues_no_lease_and_writes_nothing_in_vault() {
    let t = mallory_in_allowed_ns().await;
    let suffix = rand_suffix();
    let dynamic = format!("creds/{suffix}");
    let attacks = [
        (
            "post",
            json!({"dynamic": {"mount": "secret", "path": dynamic, "method": "POST", "params": {"data": "x"}}}),
        ),
        ("get", json!({"dynamic": {"mount": "database", "path": dynamic}})),
        (
            "pki",
            json!({"pki": {"mount": "pki", "role": suffix, "commonName": "a.example"}}),
        ),
    ];
    for (name, source) in &attacks {
        let name = format!("{name}-{suffix}");
        t.create_vs(&name, json!({"sources": [source]}))
            .await
            .expect("create VaultSecret");
    }
    let path = t.path(&format!("kv-{suffix}"));
    t.op.bao.put(&path, &[("k", "v1")]);
    let kv = format!("kv-{suffix}");
    t.create_vs(&kv, json!({"sources": [{"kv": {"mount": "secret", "path": path}}]}))
        .await
        .expect("create VaultSecret");
    for (name, _) in &attacks {
        let vs = t
            .wait_ready(&format!("{name}-{suffix}"), "False", "OperatorIdentityNotAllowed")
            .await;
        let message = &vs.status.as_ref().and_then(|s| s.ready()).expect("Ready").message;
        assert!(message.contains("reads only kv sources"), "{message}");
    }
    t.wait_secret(&kv, "the kv source to sync", has_value("k", "v1")).await;
    let touched: Vec<_> =
        t.op.bao
            .audit_responses()
            .into_iter()
            .filter(|e| {
                e["request"]["path"]
                    .as_str()
                    .is_some_and(|p| p.contains(&suffix) && !p.contains("kv-"))
            })
            .collect();
    assert!(
        touched.is_empty(),
        "requests were sent for the refused sources: {touched:?}"
    );
}

//! Identical reads are coalesced: many VaultSecrets reading one path with one identity cost a
//! few Vault reads, not one each (issue #7).

use futures::future::join_all;
use serde_json::json;

use crate::common::{TestNs, has_value};

const OBJECTS: usize = 20;

#[tokio::test]
async fn twenty_vault_secrets_reading_one_path_together_share_a_few_reads() {
    let t = TestNs::new("coalesce").await;
    let path = t.path("shared");
    t.op.bao.put(&path, &[("password", "coalesced-value")]);
    let names: Vec<String> = (0..OBJECTS).map(|i| format!("app-{i}")).collect();

    let spec = json!({"sources": [{"kv": {"mount": "secret", "path": path}}], "refresh": {"interval": "1h"}});
    let created = join_all(names.iter().map(|name| t.create_vs(name, spec.clone()))).await;
    for (name, result) in names.iter().zip(created) {
        result.unwrap_or_else(|e| panic!("create VaultSecret {name}: {e}"));
    }
    let t = &t;
    join_all(names.iter().map(|name| async move {
        t.wait_secret(name, "the shared value", has_value("password", "coalesced-value"))
            .await;
        t.wait_ready(name, "True", "Synced").await;
    }))
    .await;

    let api_path = format!("secret/data/{path}");
    let reads = (t.op.bao.audit_responses().iter())
        .filter(|e| e["request"]["path"] == api_path.as_str() && e["request"]["operation"] == "read")
        .count();
    println!("Vault reads of one path for {OBJECTS} VaultSecrets: {reads}");
    // One read each without coalescing; the bound leaves room for creates spread over seconds on
    // a loaded machine.
    assert!(
        (1..=OBJECTS / 4).contains(&reads),
        "{reads} reads for {OBJECTS} VaultSecrets reading one path together"
    );
}

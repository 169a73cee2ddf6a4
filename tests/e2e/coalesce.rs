//! Identical reads are coalesced: many VaultSecrets reading one path with one identity cost a
//! few Vault reads, not one each (issue #7).

use std::time::Duration;

use futures::future::join_all;
use serde_json::json;

use crate::common::{TestNs, has_value};

const OBJECTS: usize = 20;

/// Creates [`OBJECTS`] VaultSecrets reading `secret/<path>` together, refreshed every `interval`,
/// and waits until every Secret holds the value and every VaultSecret is Ready.
async fn sync_many(t: &TestNs, path: &str, interval: &str) {
    t.op.bao.put(path, &[("password", "coalesced-value")]);
    let names: Vec<String> = (0..OBJECTS).map(|i| format!("app-{i}")).collect();
    let spec = json!({"sources": [{"kv": {"mount": "secret", "path": path}}], "refresh": {"interval": interval}});
    let created = join_all(names.iter().map(|name| t.create_vs(name, spec.clone()))).await;
    for (name, result) in names.iter().zip(created) {
        result.unwrap_or_else(|e| panic!("create VaultSecret {name}: {e}"));
    }
    join_all(names.iter().map(|name| async move {
        t.wait_secret(name, "the shared value", has_value("password", "coalesced-value"))
            .await;
        t.wait_ready(name, "True", "Synced").await;
    }))
    .await;
}

/// Reads (not writes) of KV v2 `secret/<path>` in OpenBao's audit log.
fn reads(t: &TestNs, path: &str) -> usize {
    let api_path = format!("secret/data/{path}");
    (t.op.bao.audit_responses().iter())
        .filter(|e| e["request"]["path"] == api_path.as_str() && e["request"]["operation"] == "read")
        .count()
}

#[tokio::test]
async fn twenty_vault_secrets_reading_one_path_together_share_a_few_reads() {
    let t = TestNs::new("coalesce").await;
    let path = t.path("shared");
    sync_many(&t, &path, "1h").await;

    let reads = reads(&t, &path);
    println!("Vault reads of one path for the first sync of {OBJECTS} VaultSecrets: {reads}");
    // One read each without coalescing; the bound leaves room for creates spread over seconds on
    // a loaded machine.
    assert!(
        (1..=OBJECTS / 4).contains(&reads),
        "{reads} reads for {OBJECTS} VaultSecrets reading one path together"
    );
}

#[tokio::test]
async fn a_refresh_cycle_of_twenty_vault_secrets_on_one_path_costs_a_few_reads() {
    let t = TestNs::new("coalesce-refresh").await;
    let path = t.path("shared");
    sync_many(&t, &path, "10s").await;

    // Each object refreshes 9–10 s after its sync (jitter); 12 s later all have, once.
    let before = reads(&t, &path);
    tokio::time::sleep(Duration::from_secs(12)).await;
    let cycle = reads(&t, &path) - before;
    println!("Vault reads of one path in a refresh cycle of {OBJECTS} VaultSecrets: {cycle}");
    assert!(
        (1..=OBJECTS / 2).contains(&cycle),
        "{cycle} reads in one refresh cycle of {OBJECTS} VaultSecrets reading one path"
    );
}

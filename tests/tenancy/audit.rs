//! Acceptance 9: OpenBao's audit log attributes every read made for a namespace to that
//! namespace's ServiceAccount, never to an operator-wide identity.

use std::time::Duration;

use serde_json::json;

use crate::common::auth::kv_reads;
use crate::common::within_for;
use crate::team::{SA, Team, wait_synced};

#[tokio::test]
async fn every_read_made_for_a_namespace_is_attributed_to_its_own_service_account() {
    let a = Team::new("audit").await;
    let bao = &a.t.op.bao;
    bao.put(&a.t.path("db"), &[("password", "attributed")]);
    bao.put(&a.t.path("api"), &[("key", "attributed-too")]);
    let spec = json!({
        "auth": a.auth(),
        "sources": [
            {"kv": {"mount": "secret", "path": a.t.path("db")}},
            {"kv": {"mount": "secret", "path": a.t.path("api")}},
        ],
        "refresh": {"interval": "10s"},
    });
    a.t.create_vs("both", spec).await.expect("create VaultSecret");
    wait_synced(&a.t, "both", "password", "attributed").await;

    // The first sync and one refresh: two reads of each path.
    let reads = within_for(Duration::from_secs(60), "a refresh after the first sync", async {
        loop {
            let reads = kv_reads(bao, &a.t.ns);
            if reads.len() >= 4 {
                return reads;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    for read in &reads {
        let path = &read["request"]["path"];
        let auth = &read["auth"];
        assert_ne!(
            auth["display_name"], "root",
            "{path} was read with the root token: {auth}"
        );
        let who = &auth["metadata"];
        assert!(
            who["service_account_namespace"] == a.t.ns.as_str() && who["service_account_name"] == SA,
            "{path} was read by {who} (display name {}), not by ServiceAccount {}/{SA}",
            auth["display_name"],
            a.t.ns
        );
        assert_eq!(who["role"], a.role.as_str(), "{path} was read with another role");
    }
}

#[tokio::test]
async fn each_read_names_the_vaultsecret_it_was_made_for_in_the_audit_log() {
    let a = Team::new("audit-object").await;
    let bao = &a.t.op.bao;
    // The one Vault setting docs/security.md gives (`hmac=false`: the name is not secret).
    bao.run(&[
        "write",
        "sys/config/auditing/request-headers/X-Vaultsync-Object",
        "hmac=false",
    ]);
    bao.put(&a.t.path("db"), &[("password", "for-first")]);
    bao.put(&a.t.path("api"), &[("key", "for-second")]);
    for (name, path) in [("first", "db"), ("second", "api")] {
        let spec = json!({"auth": a.auth(), "sources": [{"kv": {"mount": "secret", "path": a.t.path(path)}}]});
        a.t.create_vs(name, spec).await.expect("create VaultSecret");
    }
    wait_synced(&a.t, "first", "password", "for-first").await;
    wait_synced(&a.t, "second", "key", "for-second").await;

    let reads = kv_reads(bao, &a.t.ns);
    assert_eq!(reads.len(), 2, "{reads:?}");
    for read in &reads {
        let path = read["request"]["path"].as_str().unwrap_or_default();
        let want = if path.ends_with("/db") { "first" } else { "second" };
        assert_eq!(
            read["request"]["headers"]["x-vaultsync-object"],
            json!([format!("{}/{want}", a.t.ns)]),
            "the audit entry of {path} does not name VaultSecret {want}: {read}"
        );
    }
}

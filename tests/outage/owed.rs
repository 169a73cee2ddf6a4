//! Revocations owed across a namespace's deletion: fifty dynamic PostgreSQL VaultSecrets, each
//! with its own lease from the namespace's own Kubernetes-auth identity; OpenBao is sealed, the
//! namespace is deleted (not held by the outage), the operator restarts (nothing in memory), and
//! once OpenBao is unsealed every lease is revoked and every PostgreSQL role dropped.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::json;

use crate::OUTAGE;
use crate::common::{OPERATOR_NS, TestNs, auth, db, is_ready, poll_for, restart_operator, value, within_for};

const COUNT: usize = 50;
const OWED: &str = "vaultsync-owed-revocations";

#[tokio::test]
async fn fifty_leases_of_a_namespace_deleted_while_sealed_are_revoked_after_unseal_across_a_restart() {
    let _turn = OUTAGE.lock().await;
    let t = TestNs::new("owed").await;
    let bao = &t.op.bao;
    auth::setup(t.op);
    let path = db::role(bao, &t.ns, "1h", "2h");
    db::policy(bao, &t.ns, &path);
    auth::kubernetes_role(bao, &t.ns, &t.ns, "app", &t.ns, &[]);
    t.create_service_account("app").await;
    for i in 0..COUNT {
        let spec = json!({
            "auth": {"kubernetes": {"role": t.ns, "serviceAccountName": "app"}},
            "sources": [{"dynamic": {"mount": db::MOUNT, "path": path}}],
        });
        t.create_vs(&format!("app-{i}"), spec)
            .await
            .expect("create VaultSecret");
    }
    let leases = poll_for("all fifty to be synced", Duration::from_secs(240), async || {
        let all = t.vaultsecrets().list(&ListParams::default()).await.ok()?;
        let leases: Vec<String> = all
            .items
            .iter()
            .filter(|vs| is_ready(vs))
            .map(|vs| db::lease(vs, "0").id)
            .collect();
        (leases.len() == COUNT).then_some(leases)
    })
    .await;
    let secrets = t.secrets().list(&ListParams::default()).await.expect("list Secrets");
    let users: Vec<String> = secrets.items.iter().filter_map(|s| value(s, "username")).collect();
    assert_eq!(users.len(), COUNT, "one PostgreSQL login per VaultSecret");
    assert_eq!(db::existing_roles(bao, &users), COUNT);

    t.op.env.seal_openbao().expect("seal OpenBao");
    let namespaces: Api<Namespace> = Api::all(t.client.clone());
    let uid = namespaces
        .get(&t.ns)
        .await
        .expect("get namespace")
        .metadata
        .uid
        .expect("uid");
    namespaces
        .delete(&t.ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
    within_for(
        Duration::from_secs(120),
        "the namespace to be deleted while OpenBao is sealed",
        await_condition(namespaces, &t.ns, conditions::is_deleted(&uid)),
    )
    .await
    .expect("watch namespace");

    // Nothing of it is left in memory: the record is what a fresh operator has to go on.
    restart_operator().await;
    let kept: Api<Secret> = Api::namespaced(t.client.clone(), OPERATOR_NS);
    let record = kept.get(OWED).await.expect("the owed revocations Secret");
    let entries: Vec<String> = record
        .data
        .unwrap_or_default()
        .into_values()
        .map(|v| String::from_utf8(v.0).expect("UTF-8"))
        .filter(|v| v.contains(&format!("\"object\":\"{}/", t.ns)))
        .collect();
    assert_eq!(entries.len(), COUNT, "one owed revocation per lease");
    let tokens = kept.get("vaultsync-lease-tokens").await.expect("kept tokens");
    for value in tokens.data.unwrap_or_default().values() {
        let kept: serde_json::Value = serde_json::from_slice(&value.0).expect("JSON");
        let token = kept["token"].as_str().expect("token");
        assert!(
            entries.iter().all(|e| !e.contains(token)),
            "a token in the owed revocations"
        );
    }

    t.op.env.unseal_openbao().expect("unseal OpenBao");
    poll_for(
        "every PostgreSQL role to be dropped",
        Duration::from_secs(120),
        async || (db::existing_roles(bao, &users) == 0).then_some(()),
    )
    .await;
    for lease in &leases {
        assert!(!db::lease_exists(bao, lease), "lease {lease} still live");
    }
    // Each by its own revocation, with the namespace's token (not by revoking that token).
    let revoked = bao
        .audit_responses()
        .iter()
        .filter(|e| e["request"]["path"] == "sys/leases/revoke" && e["error"].is_null())
        .filter(|e| e["auth"]["metadata"]["service_account_namespace"] == t.ns.as_str())
        .count();
    assert_eq!(revoked, COUNT, "revocations with the namespace's identity");
    poll_for("the record to be emptied", Duration::from_secs(30), async || {
        let record = kept.get(OWED).await.ok()?;
        let left = record
            .data
            .unwrap_or_default()
            .into_values()
            .any(|v| String::from_utf8_lossy(&v.0).contains(&format!("\"object\":\"{}/", t.ns)));
        (!left).then_some(())
    })
    .await;
}

//! A dynamic PostgreSQL credential used by a pod that logs in with it, before and after the
//! operator rotates it; the superseded credential is revoked and no longer logs in.

use std::time::Duration;

use serde_json::json;

use crate::cluster;
use crate::common::auth::kubernetes_role;
use crate::common::pods::tools_deployment;
use crate::common::{TestNs, db, value};

/// Logs in every 2 s with the credentials it got through envFrom, saying whether it could.
fn login_loop(port: &str) -> String {
    format!(
        r#"while true; do if PGPASSWORD="$password" psql -X -h 127.0.0.1 -p {port} -U "$username" -d postgres -tAc "select 1" >/dev/null 2>&1; then echo "login=$username ok"; else echo "login=$username refused"; fi; sleep 2; done"#
    )
}

#[tokio::test]
async fn a_pod_logs_in_with_the_dynamic_credential_and_with_its_replacement_while_the_old_one_is_revoked() {
    let op = cluster();
    let t = TestNs::new_in(op, "database").await;
    let bao = &op.bao;
    // Leases of 10 s renewable up to 60 s: the operator replaces the credential before then.
    let path = db::role(bao, &t.ns, "10s", "60s");
    db::policy(bao, &t.ns, &path);
    kubernetes_role(bao, &t.ns, &t.ns, "app", &t.ns, &[]);
    t.create_service_account("app").await;
    let spec = json!({
        "auth": {"kubernetes": {"role": t.ns, "serviceAccountName": "app"}},
        "sources": [{"name": "db", "dynamic": {"mount": db::MOUNT, "path": path}}],
        "refresh": {"revokeGracePeriod": "2s"},
        "rollout": {"targets": [{"kind": "Deployment", "name": "app"}]},
    });
    t.create_vs("app-secrets", spec).await.expect("create VaultSecret");
    t.wait_ready("app-secrets", "True", "Synced").await;
    let secret = t.secrets().get("app-secrets").await.unwrap();
    let (user1, password1) = (value(&secret, "username").unwrap(), value(&secret, "password").unwrap());

    let port = op
        .env
        .postgres_url
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let consume = "          envFrom: [{secretRef: {name: app-secrets}}]";
    crate::common::kubectl_apply(
        op.env,
        &tools_deployment(&t.ns, "app", &login_loop(&port), consume, ""),
        "create Deployment app",
    );
    let first = t.wait_one_pod("app", &[]).await;
    t.wait_printed(&first, &format!("login={user1} ok"), crate::POD_TIMEOUT)
        .await;

    // The operator rotates before the max TTL; the rollout brings a pod with the new credential.
    let rotated = t
        .wait_secret_for("app-secrets", Duration::from_secs(90), "a new credential", |s| {
            value(s, "username").is_some_and(|u| u != user1)
        })
        .await;
    let user2 = value(&rotated, "username").unwrap();
    let second = t.wait_one_pod("app", std::slice::from_ref(&first)).await;
    t.wait_printed(&second, &format!("login={user2} ok"), crate::POD_TIMEOUT)
        .await;
    db::wait_login_refused(bao, &user1, &password1, Duration::from_secs(30)).await;
}

//! A refused login says which part of the Vault-side set-up is the likely cause, in the terms of
//! that set-up (role fields, auth config), from what OpenBao answers.

#![allow(clippy::expect_used)] // test support: failing loudly is the point

use serde_json::json;

use crate::common::TestNs;
use crate::common::auth::{enable, kubernetes_role, read_policy};
use crate::team::{SA, ns};

/// A Kubernetes auth mount configured as for a Vault outside the cluster, but without a reviewer
/// token: Vault reviews a login token with that token itself, which the API server refuses.
const NO_REVIEWER_MOUNT: &str = "kubernetes-no-reviewer";

async fn refused_with(t: &TestNs, name: &str, auth: serde_json::Value, needle: &str) {
    let spec = json!({
        "auth": {"kubernetes": auth},
        "sources": [{"kv": {"mount": "secret", "path": t.path("db")}}],
    });
    t.create_vs(name, spec).await.expect("create VaultSecret");
    let vs = t.wait_ready(name, "False", "LoginFailed").await;
    let message = vs
        .status
        .and_then(|s| s.ready().map(|c| c.message.clone()))
        .unwrap_or_default();
    assert!(
        message.contains(needle),
        "{name}: the message does not name {needle}: {message}"
    );
    assert!(!message.contains("eyJ"), "a token in the status: {message}");
}

#[tokio::test]
async fn a_refused_kubernetes_login_names_the_likely_cause() {
    let t = ns("login-causes").await;
    let bao = &t.op.bao;
    let env = t.op.env;
    read_policy(bao, &t.ns, &t.ns);
    t.create_service_account(SA).await;
    bao.put(&t.path("db"), &[("password", "never-synced")]);

    let audience = format!("{}-aud", t.ns);
    bao.run(&[
        "write",
        &format!("auth/kubernetes/role/{audience}"),
        &format!("bound_service_account_names={SA}"),
        &format!("bound_service_account_namespaces={}", t.ns),
        "audience=billing",
        &format!("token_policies={}", t.ns),
    ]);
    let namespace = format!("{}-ns", t.ns);
    kubernetes_role(bao, &namespace, "elsewhere", SA, &t.ns, &[]);
    let account = format!("{}-sa", t.ns);
    kubernetes_role(bao, &account, &t.ns, "someone-else", &t.ns, &[]);
    enable(bao, "kubernetes", NO_REVIEWER_MOUNT);
    bao.run(&[
        "write",
        &format!("auth/{NO_REVIEWER_MOUNT}/config"),
        &format!("kubernetes_host={}", env.api_server_url()),
        &format!("kubernetes_ca_cert={}", env.ca_pem()),
        "disable_local_ca_jwt=true",
    ]);
    bao.run(&[
        "write",
        &format!("auth/{NO_REVIEWER_MOUNT}/role/{}", t.ns),
        &format!("bound_service_account_names={SA}"),
        &format!("bound_service_account_namespaces={}", t.ns),
        "audience=vault",
        &format!("token_policies={}", t.ns),
    ]);

    let cases = [
        (
            "audience",
            json!({"role": audience, "serviceAccountName": SA}),
            "spec.auth.kubernetes.audiences",
        ),
        (
            "namespace",
            json!({"role": namespace, "serviceAccountName": SA}),
            "bound_service_account_namespaces",
        ),
        (
            "account",
            json!({"role": account, "serviceAccountName": SA}),
            "bound_service_account_names",
        ),
        (
            "reviewer",
            json!({"role": t.ns, "serviceAccountName": SA, "mount": NO_REVIEWER_MOUNT}),
            "token_reviewer_jwt",
        ),
        (
            "role",
            json!({"role": "no-such-role", "serviceAccountName": SA}),
            "names no role",
        ),
    ];
    for (name, auth, needle) in cases {
        refused_with(&t, name, auth, needle).await;
    }
}

//! This binary's operator, and namespaces that bring their own Vault identity.

#![allow(clippy::expect_used)] // test support: failing loudly is the point

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::wait::await_condition;
use serde_json::{Value, json};

use crate::common::auth::{kubernetes_role, read_policy, setup};
use crate::common::{EVENTUALLY, Operator, TestNs, has_value, operator_with};

/// The one namespace whose VaultSecrets may go without `spec.auth` (fixed name, shared by runs).
pub const ALLOWED_NS: &str = "tenancy-allowed";

/// The ServiceAccount a [`Team`] logs in as.
pub const SA: &str = "app";

/// The operator of this binary: its own token only for [`ALLOWED_NS`].
pub fn op() -> &'static Operator {
    operator_with(|s| s.default_identity_namespaces = vec![ALLOWED_NS.into()])
}

/// A fresh namespace `<prefix>-<random>`, with OpenBao's auth methods set up.
pub async fn ns(prefix: &str) -> TestNs {
    let op = op();
    setup(op);
    TestNs::new_in(op, prefix).await
}

/// A namespace with ServiceAccount [`SA`], allowed by Vault role `<ns>` to read its own paths only
/// (policy `<ns>`: `secret/data/<ns>/*` and `kv1/<ns>/*`).
pub struct Team {
    pub t: TestNs,
    pub role: String,
}

impl Team {
    pub async fn new(prefix: &str) -> Team {
        Team::with_role(prefix, &[]).await
    }

    /// `extra` adds Vault role parameters, e.g. `token_ttl=20s`.
    pub async fn with_role(prefix: &str, extra: &[&str]) -> Team {
        let t = ns(prefix).await;
        let bao = &t.op.bao;
        read_policy(bao, &t.ns, &t.ns);
        kubernetes_role(bao, &t.ns, &t.ns, SA, &t.ns, extra);
        t.create_service_account(SA).await;
        let role = t.ns.clone();
        Team { t, role }
    }

    /// `spec.auth` logging in as this team's ServiceAccount.
    pub fn auth(&self) -> Value {
        json!({"kubernetes": {"role": self.role, "serviceAccountName": SA}})
    }

    /// A spec reading KV v2 `secret/<path>` as this team.
    pub fn spec(&self, path: &str) -> Value {
        json!({"auth": self.auth(), "sources": [{"kv": {"mount": "secret", "path": path}}]})
    }
}

/// Waits until Secret `name` (written by VaultSecret `name`) holds `want` under `key`; on timeout
/// the panic shows the VaultSecret's Ready condition instead of the value.
pub async fn wait_synced(t: &TestNs, name: &str, key: &'static str, want: &str) -> Secret {
    match tokio::time::timeout(EVENTUALLY, await_condition(t.secrets(), name, has_value(key, want))).await {
        Ok(secret) => secret.expect("watch Secret").expect("Secret exists"),
        Err(_) => panic!(
            "timed out after {EVENTUALLY:?} waiting for Secret {}/{name} to hold the expected {key:?}; \
             VaultSecret {name} is {}",
            t.ns,
            t.ready_of(name).await
        ),
    }
}

/// Asserts that VaultSecret `name` produced no Secret.
pub async fn assert_no_secret(t: &TestNs, name: &str) {
    let secret = t.secrets().get_opt(name).await.expect("get Secret");
    assert!(
        secret.is_none(),
        "a Secret {}/{name} was written although VaultSecret {name} is {}",
        t.ns,
        t.ready_of(name).await
    );
}

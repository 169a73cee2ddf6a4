//! Attacks on the trust boundary (issue 13), each tried as a VaultSecret author — user `mallory`,
//! whose RBAC allows VaultSecrets and reading Secrets in her namespace and nothing else — against
//! the real API server and OpenBao. Two loopback capture servers stand in for other "Vault"s: one
//! the administrator never allowed ([`foreign`]), and one allowed for namespace identities only
//! ([`trusted`]); both record every connection they get.
//!
//! A binary of its own: its operator runs with the boundary settings of [`op`].

#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test helpers panic on purpose

#[path = "../common/mod.rs"]
mod common;

mod capture;

mod address;
mod destination;
mod operator_identity;
mod paths;
mod references;
mod tokens;

use std::sync::OnceLock;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::Client;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use vaultsync::controller::Settings;

use capture::Capture;
use common::auth::{kubernetes_role, read_policy, setup};
use common::kubectl_apply;
use common::{Operator, TestNs, operator_with};

/// The namespace whose VaultSecrets may use the operator's own token (`kv` only).
pub const ALLOWED_NS: &str = "attacks-allowed";

/// The ServiceAccount a team logs in as.
pub const SA: &str = "app";

/// The user every attack runs as.
pub const MALLORY: &str = "mallory";

/// A "Vault" no setting allows.
pub fn foreign() -> &'static Capture {
    static FOREIGN: OnceLock<Capture> = OnceLock::new();
    FOREIGN.get_or_init(Capture::start)
}

/// A "Vault" in `--allowed-vault-addresses`: namespace identities may log in there, the operator's
/// own token must never reach it.
pub fn trusted() -> &'static Capture {
    static TRUSTED: OnceLock<Capture> = OnceLock::new();
    TRUSTED.get_or_init(Capture::start)
}

/// The API server's own audience (its service-account issuer), which this binary's administrator
/// allow-lists on purpose so that only the API server's own verdict stands between it and a login.
pub fn api_audience() -> String {
    format!("{}/", xtask::Env::shared().api_server_url())
}

fn configure(s: &mut Settings) {
    s.default_identity_namespaces = vec![ALLOWED_NS.into()];
    s.default_identity_leases_namespaces = Vec::new();
    s.allowed_vault_addresses = vec![vaultsync::vault::parse_address(&trusted().url()).expect("capture URL")];
    s.allowed_token_audiences = vec!["vault".into(), api_audience()];
}

/// This binary's operator.
pub fn op() -> &'static Operator {
    operator_with(configure)
}

/// Mallory's namespace `<prefix>-<random>`: ServiceAccount [`SA`] with a Vault role reading the
/// namespace's own paths, and the RBAC of a VaultSecret author. `t.client` acts as mallory.
pub async fn mallory(prefix: &str) -> TestNs {
    let op = op();
    setup(op);
    let admin = TestNs::new_in(op, prefix).await;
    prepare(&admin).await;
    as_mallory(admin).await
}

/// Mallory in the fixed namespace [`ALLOWED_NS`].
pub async fn mallory_in_allowed_ns() -> TestNs {
    let op = op();
    setup(op);
    let admin = TestNs::fixed_in(op, ALLOWED_NS).await;
    prepare(&admin).await;
    as_mallory(admin).await
}

async fn prepare(admin: &TestNs) {
    let bao = &admin.op.bao;
    read_policy(bao, &admin.ns, &admin.ns);
    kubernetes_role(bao, &admin.ns, &admin.ns, SA, &admin.ns, &[]);
    if admin
        .service_accounts()
        .get_opt(SA)
        .await
        .expect("get ServiceAccount")
        .is_none()
    {
        admin.create_service_account(SA).await;
    }
    let rbac = format!(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: vaultsecret-author, namespace: {ns}}}
rules:
  - apiGroups: [vaultsync.dev]
    resources: [vaultsecrets]
    verbs: [get, list, watch, create, update, patch, delete]
  - apiGroups: ['']
    resources: [secrets]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: mallory, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: vaultsecret-author}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {MALLORY}}}]
",
        ns = admin.ns
    );
    kubectl_apply(admin.op.env, &rbac, "grant mallory VaultSecrets");
}

async fn as_mallory(admin: TestNs) -> TestNs {
    let kc = Kubeconfig::read_from(&admin.op.env.kubeconfig).expect("read kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    config.auth_info.impersonate = Some(MALLORY.into());
    let client = Client::try_from(config).expect("kube client");
    // RBAC is in force once mallory can list VaultSecrets; she can never list Secrets elsewhere.
    let t = TestNs {
        client,
        ns: admin.ns.clone(),
        op: admin.op,
    };
    common::within("mallory's RBAC to take effect", async {
        while t.vaultsecrets().list(&Default::default()).await.is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    })
    .await;
    t
}

/// An admin view of the same namespace.
pub async fn admin(t: &TestNs) -> TestNs {
    TestNs {
        client: t.op.client().await,
        ns: t.ns.clone(),
        op: t.op,
    }
}

/// `spec.auth` logging in as the namespace's ServiceAccount [`SA`].
pub fn kubernetes_auth(t: &TestNs) -> Value {
    json!({"kubernetes": {"role": t.ns, "serviceAccountName": SA}})
}

/// Whether the API server authenticates `token` (a TokenReview as admin, with the API server's
/// own audiences).
pub async fn authenticates(t: &TestNs, token: &str) -> bool {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_owned()),
            audiences: None,
        },
        ..Default::default()
    };
    let reviewed = Api::<TokenReview>::all(t.op.client().await)
        .create(&PostParams::default(), &review)
        .await
        .expect("TokenReview");
    reviewed.status.and_then(|s| s.authenticated).unwrap_or(false)
}

/// The names of OpenBao's ACL policies.
pub fn policies(t: &TestNs) -> Vec<String> {
    let out = t.op.bao.run(&["policy", "list", "-format=json"]);
    serde_json::from_str(&out).expect("policy list json")
}

/// Asserts that creating VaultSecret `name` with `spec` is refused by the API server (422) with a
/// message containing `needle`.
pub async fn assert_schema_refuses(t: &TestNs, name: &str, spec: Value, needle: &str) {
    match t.create_vs(name, spec.clone()).await {
        Ok(_) => panic!("the API server accepted {spec}"),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{spec}: {status:?}");
            assert!(status.message.contains(needle), "{spec}: {}", status.message);
        }
        Err(e) => panic!("{spec}: unexpected error {e}"),
    }
}

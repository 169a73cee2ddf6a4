//! Vault identities for tests: OpenBao's Kubernetes auth checked by a real TokenReview against the
//! test API server, AppRole, read policies and tokens, and the audit-log queries that attribute
//! logins, renewals and reads to them.

use std::sync::OnceLock;

use serde_json::Value;

use super::{Bao, Operator};

/// Mount of OpenBao's Kubernetes auth method (the default of `spec.auth.kubernetes.mount`).
pub const KUBERNETES_MOUNT: &str = "kubernetes";
/// Mount of OpenBao's JWT auth method (the default of `spec.auth.jwt.mount`).
pub const JWT_MOUNT: &str = "jwt";
/// Mount of OpenBao's AppRole auth method (the default of `spec.auth.appRole.mount`).
pub const APPROLE_MOUNT: &str = "approle";
/// The ServiceAccount OpenBao reviews login tokens with.
const REVIEWER: &str = "vault-reviewer";

const REVIEWER_RBAC: &str = "\
apiVersion: v1
kind: ServiceAccount
metadata:
  name: vault-reviewer
  namespace: kube-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: vault-reviewer-auth-delegator
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:auth-delegator
subjects:
  - kind: ServiceAccount
    name: vault-reviewer
    namespace: kube-system
";

/// Enables and configures the `kubernetes/`, `jwt/` and `approle/` auth methods, once per test
/// binary.
/// Idempotent, so binaries attached to one environment (`VAULTSYNC_ENV_DIR`) can all call it.
pub fn setup(op: &Operator) {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| configure(op));
}

fn configure(op: &Operator) {
    let env = op.env;
    super::operator::kubectl_apply(env, REVIEWER_RBAC, "create the token reviewer");
    let out = env
        .kubectl()
        .args(["create", "token", REVIEWER, "-n", "kube-system", "--duration=24h"])
        .output()
        .expect("kubectl create token");
    assert!(
        out.status.success(),
        "token for {REVIEWER}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reviewer_jwt = String::from_utf8_lossy(&out.stdout).trim().to_owned();

    let bao = &op.bao;
    enable(bao, "kubernetes", KUBERNETES_MOUNT);
    enable(bao, "approle", APPROLE_MOUNT);
    enable(bao, "jwt", JWT_MOUNT);
    // Logins send the role in the clear: let the audit log show it, so a login (even a refused
    // one) can be attributed to the role a test dedicated to itself.
    for mount in [KUBERNETES_MOUNT, JWT_MOUNT] {
        bao.run(&[
            "auth",
            "tune",
            "-audit-non-hmac-request-keys=role",
            &format!("{mount}/"),
        ]);
    }
    bao.run(&[
        "write",
        &format!("auth/{KUBERNETES_MOUNT}/config"),
        &format!("kubernetes_host={}", env.api_server_url()),
        &format!("kubernetes_ca_cert={}", env.ca_pem()),
        &format!("token_reviewer_jwt={reviewer_jwt}"),
    ]);
    // JWT auth checks ServiceAccount tokens itself, against the API server's signing key and
    // issuer, and never calls the API server.
    let discovery = env
        .kubectl()
        .args(["get", "--raw", "/.well-known/openid-configuration"])
        .output()
        .expect("kubectl get --raw");
    let discovery: Value = serde_json::from_slice(&discovery.stdout).expect("OpenID discovery document");
    let issuer = discovery["issuer"].as_str().expect("issuer");
    bao.run(&[
        "write",
        &format!("auth/{JWT_MOUNT}/config"),
        &format!("jwt_validation_pubkeys={}", env.service_account_key_pem()),
        &format!("bound_issuer={issuer}"),
    ]);
}

/// `bao auth enable -path=MOUNT METHOD` unless something is mounted there already.
pub fn enable(bao: &Bao, method: &str, mount: &str) {
    let enabled = || {
        let list: Value = serde_json::from_str(&bao.run(&["auth", "list", "-format=json"])).expect("auth list json");
        list.get(format!("{mount}/")).is_some()
    };
    if enabled() {
        return;
    }
    let out = bao
        .env
        .bao()
        .args(["auth", "enable", &format!("-path={mount}"), method])
        .output()
        .expect("run bao");
    // Another binary on the same environment may have won the race.
    assert!(
        out.status.success() || enabled(),
        "enable {method} auth at {mount}/: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes ACL policy `name` granting read on `secret/data/<prefix>/*` and `kv1/<prefix>/*`.
pub fn read_policy(bao: &Bao, name: &str, prefix: &str) {
    let policy = format!(
        "path \"secret/data/{prefix}/*\" {{ capabilities = [\"read\"] }}\n\
         path \"kv1/{prefix}/*\" {{ capabilities = [\"read\"] }}\n"
    );
    bao.run(&[
        "write",
        &format!("sys/policies/acl/{name}"),
        &format!("policy={policy}"),
    ]);
}

/// Kubernetes auth role `role`: ServiceAccount `service_account` of `namespace`, token audience
/// `vault`, `policy`. `extra` adds role parameters such as `token_ttl=20s`, `token_max_ttl=60s`.
pub fn kubernetes_role(bao: &Bao, role: &str, namespace: &str, service_account: &str, policy: &str, extra: &[&str]) {
    let mut args = vec![
        "write".to_owned(),
        format!("auth/{KUBERNETES_MOUNT}/role/{role}"),
        format!("bound_service_account_names={service_account}"),
        format!("bound_service_account_namespaces={namespace}"),
        "audience=vault".to_owned(),
        format!("token_policies={policy}"),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    bao.run(&args);
}

/// JWT auth role `role` for ServiceAccount `service_account` of `namespace` (the token's `sub`),
/// token audience `audience`, `policy`. `extra` adds role parameters such as `token_ttl=20s`.
pub fn jwt_role(
    bao: &Bao,
    role: &str,
    namespace: &str,
    service_account: &str,
    audience: &str,
    policy: &str,
    extra: &[&str],
) {
    let mut args = vec![
        "write".to_owned(),
        format!("auth/{JWT_MOUNT}/role/{role}"),
        "role_type=jwt".to_owned(),
        "user_claim=sub".to_owned(),
        format!("bound_subject=system:serviceaccount:{namespace}:{service_account}"),
        format!("bound_audiences={audience}"),
        format!("token_policies={policy}"),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    bao.run(&args);
}

/// AppRole role `role` with `policy`; returns its role ID and a first secret ID.
pub fn approle_role(bao: &Bao, role: &str, policy: &str) -> (String, String) {
    bao.run(&[
        "write",
        &format!("auth/{APPROLE_MOUNT}/role/{role}"),
        &format!("token_policies={policy}"),
        "secret_id_ttl=0",
    ]);
    let role_id = bao
        .run(&[
            "read",
            "-field=role_id",
            &format!("auth/{APPROLE_MOUNT}/role/{role}/role-id"),
        ])
        .trim()
        .to_owned();
    (role_id, new_secret_id(bao, role))
}

/// Generates another secret ID for AppRole role `role`.
pub fn new_secret_id(bao: &Bao, role: &str) -> String {
    bao.run(&[
        "write",
        "-f",
        "-field=secret_id",
        &format!("auth/{APPROLE_MOUNT}/role/{role}/secret-id"),
    ])
    .trim()
    .to_owned()
}

/// Destroys `secret_id` of AppRole role `role`: later logins with it fail (tokens already issued
/// with it stay valid).
pub fn destroy_secret_id(bao: &Bao, role: &str, secret_id: &str) {
    bao.run(&[
        "write",
        &format!("auth/{APPROLE_MOUNT}/role/{role}/secret-id/destroy"),
        &format!("secret_id={secret_id}"),
    ]);
}

/// A new token (child of the root token) with `policy` only, for `spec.auth.token`.
pub fn token_with_policy(bao: &Bao, policy: &str) -> String {
    bao.run(&[
        "token",
        "create",
        "-field=token",
        &format!("-policy={policy}"),
        "-ttl=2h",
    ])
    .trim()
    .to_owned()
}

/// Responses to Kubernetes logins that asked for `role` (successful or not; the role is logged
/// in the clear, see [`setup`]).
pub fn kubernetes_logins(bao: &Bao, role: &str) -> Vec<Value> {
    logins(bao, KUBERNETES_MOUNT, role)
}

/// Responses to JWT logins that asked for `role`, as [`kubernetes_logins`].
pub fn jwt_logins(bao: &Bao, role: &str) -> Vec<Value> {
    logins(bao, JWT_MOUNT, role)
}

fn logins(bao: &Bao, mount: &str, role: &str) -> Vec<Value> {
    let path = format!("auth/{mount}/login");
    let mut entries = bao.audit_responses();
    entries.retain(|e| e["request"]["path"] == path.as_str() && e["request"]["data"]["role"] == role);
    entries
}

/// Whether an audit response reports success (no `error`).
pub fn succeeded(entry: &Value) -> bool {
    entry.get("error").is_none_or(Value::is_null)
}

/// Successful AppRole logins as role `role` (the request's role ID is HMAC'd; the issued token's
/// metadata names the role).
pub fn approle_logins(bao: &Bao, role: &str) -> usize {
    let path = format!("auth/{APPROLE_MOUNT}/login");
    bao.audit_responses()
        .iter()
        .filter(|e| e["request"]["path"] == path.as_str() && succeeded(e) && e["auth"]["metadata"]["role_name"] == role)
        .count()
}

/// Successful `auth/token/renew-self` calls by tokens of Kubernetes role `role`.
pub fn renewals(bao: &Bao, role: &str) -> usize {
    bao.audit_responses()
        .iter()
        .filter(|e| {
            e["request"]["path"] == "auth/token/renew-self" && succeeded(e) && e["auth"]["metadata"]["role"] == role
        })
        .count()
}

/// Responses to reads of `secret/data/<prefix>/...` (KV v2 data reads, whoever made them).
pub fn kv_reads(bao: &Bao, prefix: &str) -> Vec<Value> {
    let start = format!("secret/data/{prefix}/");
    let mut entries = bao.audit_responses();
    entries.retain(|e| {
        e["request"]["operation"] == "read" && e["request"]["path"].as_str().is_some_and(|p| p.starts_with(&start))
    });
    entries
}

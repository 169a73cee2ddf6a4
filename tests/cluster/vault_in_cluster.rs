//! The recipe of `docs/vault-setup.md` for a Vault inside the cluster: OpenBao runs as a pod with
//! a ServiceAccount of its own, its Kubernetes auth is configured with no reviewer token and no
//! CA (it uses its pod's), and a login with a ServiceAccount token succeeds exactly once that
//! ServiceAccount is bound to `system:auth-delegator`. (The recipe for a Vault outside the cluster,
//! with `token_reviewer_jwt`, is what every other test's OpenBao runs: `tests/common/auth.rs`.)

use std::time::Duration;

use crate::cluster;
use crate::common::cluster::{POD_TIMEOUT, tools_image};
use crate::common::{TestNs, free_port, kubectl_apply, poll_for};

const ROOT_TOKEN: &str = "in-cluster-root";

/// `bao` against the OpenBao in the pod (the environment's command, pointed elsewhere).
fn bao(addr: &str, args: &[&str]) -> (bool, String) {
    let mut cmd = cluster().env.bao();
    for (name, value) in [("ADDR", addr), ("TOKEN", ROOT_TOKEN)] {
        cmd.env(format!("BAO_{name}"), value)
            .env(format!("VAULT_{name}"), value);
    }
    let out = cmd.args(args).output().expect("run bao");
    let text = String::from_utf8_lossy(if out.status.success() { &out.stdout } else { &out.stderr });
    (out.status.success(), text.into_owned())
}

#[tokio::test]
async fn a_vault_inside_the_cluster_reviews_logins_with_its_own_service_account() {
    let op = cluster();
    let t = TestNs::new_in(op, "vault-inside").await;
    let port = free_port();
    let addr = format!("http://127.0.0.1:{port}");
    let host_bao = op.env.bao();
    let bao_dir = std::path::Path::new(host_bao.get_program())
        .parent()
        .unwrap()
        .display()
        .to_string();
    t.create_service_account("openbao").await;
    // OpenBao's dev server from the host's binary (the node has no image of it), as ServiceAccount
    // `openbao` with its token mounted where OpenBao looks for it.
    let pod = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: openbao, namespace: {ns}}}
spec:
  serviceAccountName: openbao
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: {image}
      imagePullPolicy: Never
      command: [/opt/openbao/bao, server, -dev, -dev-root-token-id={ROOT_TOKEN}, -dev-listen-address=127.0.0.1:{port}]
      env: [{{name: HOME, value: /tmp}}]
      volumeMounts: [{{name: openbao, mountPath: /opt/openbao, readOnly: true}}]
  volumes: [{{name: openbao, hostPath: {{path: {bao_dir}, type: Directory}}}}]
"#,
        ns = t.ns,
        image = tools_image(),
    );
    kubectl_apply(op.env, &pod, "create the OpenBao pod");
    poll_for("OpenBao in its pod to answer", POD_TIMEOUT, async || {
        bao(&addr, &["status"]).0.then_some(())
    })
    .await;

    // The recipe: Kubernetes auth with only the API server's address (in a real cluster
    // https://kubernetes.default.svc; this node has no Service network, so its loopback address).
    assert!(bao(&addr, &["auth", "enable", "kubernetes"]).0);
    let (ok, out) = bao(
        &addr,
        &[
            "write",
            "auth/kubernetes/config",
            &format!("kubernetes_host={}", op.env.api_server_url()),
        ],
    );
    assert!(ok, "auth/kubernetes/config: {out}");
    let (ok, out) = bao(
        &addr,
        &[
            "write",
            "auth/kubernetes/role/app",
            "bound_service_account_names=app",
            &format!("bound_service_account_namespaces={}", t.ns),
            "audience=vault",
            "token_policies=default",
        ],
    );
    assert!(ok, "auth/kubernetes/role/app: {out}");
    t.create_service_account("app").await;
    let jwt = t.kubectl(&["create", "token", "app", "--audience", "vault"]);
    let login = || {
        bao(
            &addr,
            &[
                "write",
                "-field=token_policies",
                "auth/kubernetes/login",
                "role=app",
                &format!("jwt={}", jwt.trim()),
            ],
        )
    };

    let (ok, out) = login();
    assert!(
        !ok && out.contains("permission denied"),
        "a login before the binding: {out}"
    );

    let binding = format!(
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {ns}-openbao-auth-delegator}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:auth-delegator}}
subjects: [{{kind: ServiceAccount, name: openbao, namespace: {ns}}}]
"#,
        ns = t.ns
    );
    kubectl_apply(
        op.env,
        &binding,
        "bind OpenBao's ServiceAccount to system:auth-delegator",
    );
    let policies = poll_for(
        "a login once OpenBao may review tokens",
        Duration::from_secs(30),
        async || {
            let (ok, out) = login();
            ok.then_some(out)
        },
    )
    .await;
    assert!(policies.contains("default"), "{policies}");
    t.kubectl(&["delete", "pod", "openbao", "--wait=false"]);
    op.env
        .kubectl()
        .args([
            "delete",
            "clusterrolebinding",
            &format!("{}-openbao-auth-delegator", t.ns),
        ])
        .output()
        .expect("kubectl delete");
}

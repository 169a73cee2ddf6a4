//! `cargo xtask demo`: vaultsync as users run it, on the local environment with a node — the
//! operator's image, `config/default` installed with kubectl, OpenBao's Kubernetes auth for one
//! application namespace, a VaultSecret, and a pod that prints the secret before and after a
//! rotation in OpenBao.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::image::{self, TOOLS_IMAGE};
use crate::{Env, EnvOptions, deploy};

/// The application's namespace, ServiceAccount, Vault role and Deployment.
const APP: &str = "shop";

/// OpenBao's side of Kubernetes auth, as an administrator would type it (see
/// `examples/kubernetes-auth.yaml`): Vault runs outside the cluster, so it reviews login tokens
/// with a reviewer ServiceAccount's token.
const REVIEWER: &str = "\
apiVersion: v1
kind: ServiceAccount
metadata: {name: vault-reviewer, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: vault-reviewer-auth-delegator}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:auth-delegator}
subjects: [{kind: ServiceAccount, name: vault-reviewer, namespace: kube-system}]
";

/// The application team's manifests: its namespace and ServiceAccount, the VaultSecret, and a
/// Deployment that prints what it got.
fn app_manifests() -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {APP}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {APP}, namespace: {APP}}}
---
apiVersion: vaultsync.dev/v1alpha1
kind: VaultSecret
metadata: {{name: shop-config, namespace: {APP}}}
spec:
  auth:
    kubernetes: {{role: {APP}, serviceAccountName: {APP}}}
  sources:
    - kv: {{mount: secret, path: shop/config}}
  refresh: {{interval: 10s}}     # short for the demo; the default is 1h
  rollout:
    targets: [{{kind: Deployment, name: {APP}}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {APP}, namespace: {APP}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {APP}}}}}
  template:
    metadata: {{labels: {{app: {APP}}}}}
    spec:
      hostNetwork: true              # the local node has only loopback
      terminationGracePeriodSeconds: 1
      containers:
        - name: {APP}
          image: {image}
          imagePullPolicy: Never
          command: ["/bin/sh", "-c", 'echo "password=$password"; sleep 100000']
          envFrom: [{{secretRef: {{name: shop-config}}}}]
"#,
        image = TOOLS_IMAGE.trim_start_matches("docker.io/library/"),
    )
}

/// Runs the demo in `dir`; the environment stops when the demo ends.
pub fn run(dir: &Path) -> Result<()> {
    step("building the operator's image: cargo xtask image");
    let operator = image::operator()?;
    println!(
        "{} ({:.1} MiB)",
        operator.path.display(),
        operator.written.layer_size as f64 / 1_048_576.0
    );

    step(
        "starting etcd, kube-apiserver, kube-controller-manager, OpenBao, PostgreSQL and a node (containerd, kubelet) on loopback",
    );
    let env = Env::up(EnvOptions {
        dir: dir.to_path_buf(),
        detached: false,
        node: true,
    })?;
    let result = demo(&env, &operator);
    env.down()?;
    result
}

fn demo(env: &Env, operator: &image::Archive) -> Result<()> {
    step("installing vaultsync: kubectl apply -k config/default, through this overlay");
    let tools = image::tools(&env.dir)?;
    env.import_image(&tools.path)?;
    let installed = deploy::install(env, operator, "default", "vaultsync-system", 1)?;
    println!(
        "{}",
        std::fs::read_to_string(installed.overlay.join("kustomization.yaml"))?
    );
    show(env.kubectl().args(["get", "pods", "-n", "vaultsync-system"]))?;

    step("OpenBao: Kubernetes auth, and a role for ServiceAccount shop/shop that reads secret/shop/*");
    kubectl_apply(env, REVIEWER)?;
    let reviewer_jwt = output(env.kubectl().args([
        "create",
        "token",
        "vault-reviewer",
        "-n",
        "kube-system",
        "--duration=24h",
    ]))?;
    show(env.bao().args(["auth", "enable", "kubernetes"]))?;
    // The reviewer's token goes on stdin (`-`), never into a command line or an error message.
    show_input(
        env.bao().args([
            "write",
            "auth/kubernetes/config",
            &format!("kubernetes_host={}", env.api_server_url()),
            &format!("kubernetes_ca_cert={}", env.ca_pem()),
            "token_reviewer_jwt=-",
        ]),
        reviewer_jwt.trim(),
    )?;
    let policy = r#"path "secret/data/shop/*" { capabilities = ["read"] }"#;
    show_input(env.bao().args(["policy", "write", APP, "-"]), policy)?;
    show(env.bao().args([
        "write",
        "auth/kubernetes/role/shop",
        "bound_service_account_names=shop",
        "bound_service_account_namespaces=shop",
        "audience=vault",
        "token_policies=shop",
        "token_ttl=1h",
    ]))?;

    step("writing a KV secret: bao kv put secret/shop/config password=change-me");
    show(
        env.bao()
            .args(["kv", "put", "secret/shop/config", "password=change-me"]),
    )?;

    step("the application team applies its VaultSecret and a Deployment that reads it (envFrom)");
    let manifests = app_manifests();
    println!("{manifests}");
    kubectl_apply(env, &manifests)?;
    show(env.kubectl().args([
        "wait",
        "--for=condition=Ready",
        "--timeout=60s",
        "-n",
        APP,
        "vaultsecret/shop-config",
    ]))?;
    show(env.kubectl().args(["get", "vaultsecret", "-n", APP]))?;
    let first = wait_printed(env, &[], "password=change-me")?;

    step("changing the password in OpenBao: bao kv patch secret/shop/config password=rotated");
    show(
        env.bao()
            .args(["kv", "patch", "secret/shop/config", "password=rotated"]),
    )?;
    println!("waiting for the refresh (interval 10s) and the rollout it triggers...");
    wait_printed(env, &[first], "password=rotated")?;
    show(env.kubectl().args(["get", "replicasets,pods", "-n", APP]))?;
    step("done; stopping everything");
    Ok(())
}

/// Waits until a running pod of the application other than `not` prints `line`; shows the line
/// and returns the pod's name.
fn wait_printed(env: &Env, not: &[String], line: &str) -> Result<String> {
    let started = Instant::now();
    loop {
        let pods = output(env.kubectl().args([
            "get",
            "pods",
            "-n",
            APP,
            "--field-selector=status.phase=Running",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]))?;
        for pod in pods.split_whitespace().filter(|p| !not.iter().any(|n| n == p)) {
            let log = env.container_log(APP, pod, APP);
            if log.lines().any(|l| l.ends_with(line)) {
                println!("pod {pod} printed: {line}   (after {:.0?})", started.elapsed());
                return Ok(pod.to_owned());
            }
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!(
                "no pod printed {line:?} within 120 s; see {}/node/pod-logs and {}/logs",
                env.dir.display(),
                env.dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn step(text: &str) {
    println!("\n==> {text}");
}

/// `kubectl apply -f -` of `yaml`.
fn kubectl_apply(env: &Env, yaml: &str) -> Result<()> {
    show_input(env.kubectl().args(["apply", "-f", "-"]), yaml)
}

/// Runs `cmd` with its output shown. Errors name the program and arguments, never the
/// environment (which holds the OpenBao token).
fn show(cmd: &mut Command) -> Result<()> {
    execute(cmd, None)
}

/// Like [`show`], with `input` on the command's standard input.
fn show_input(cmd: &mut Command, input: &str) -> Result<()> {
    execute(cmd, Some(input))
}

fn execute(cmd: &mut Command, input: Option<&str>) -> Result<()> {
    let what = describe(cmd);
    let mut child = cmd
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .spawn()
        .with_context(|| format!("running {what}"))?;
    if let (Some(text), Some(mut pipe)) = (input, child.stdin.take()) {
        std::io::Write::write_all(&mut pipe, text.as_bytes())?;
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` and returns its standard output (not shown: it may hold a token).
fn output(cmd: &mut Command) -> Result<String> {
    let what = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn describe(cmd: &Command) -> String {
    let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    format!("{} {}", cmd.get_program().to_string_lossy(), args.join(" "))
}

//! Installing the operator on the environment's node as users do: its image imported, and a
//! shipped kustomization of `config/` applied through an overlay that only points it at this
//! environment.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::Env;
use crate::binaries::workspace_root;
use crate::image;

/// What [`install`] set up.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The overlay directory (its `kustomization.yaml` shows what differs from the shipped files),
    /// or for helm the directory of its `values.yaml`.
    pub overlay: PathBuf,
    /// The namespace the operator runs in.
    pub namespace: String,
    /// The operator's HTTP endpoints (`/metrics`, `/healthz`, `/readyz`), `http://127.0.0.1:PORT`,
    /// for a single replica (several bind ports of their own).
    pub http: Option<String>,
}

/// The overlay's `kustomization.yaml`: `config/<base>` as shipped, with the image imported here,
/// `replicas` replicas, and — because pods on this node use the host's network — OpenBao's and
/// the API server's loopback addresses.
///
/// One replica gets a free loopback port for its HTTP endpoints, and probes of that address (the
/// kubelet would probe the node's own address, which is not loopback, and nothing here may send
/// traffic beyond loopback). Replicas on one host network cannot share a port, so with more than
/// one each binds a port of its own (`127.0.0.1:0`) and the overlay drops the declared port and the
/// probes: such an install shows leader election, the single replica shows the probes.
pub fn overlay(
    env: &Env,
    overlay_dir: &Path,
    base: &str,
    namespace: &str,
    replicas: u32,
    http_port: u16,
) -> Result<String> {
    let api = env.api_server_url();
    let api_port = api.rsplit(':').next().context("the API server URL has no port")?;
    // kustomize takes only relative paths to other kustomizations.
    let config = relative(overlay_dir, &workspace_root().join("config").join(base));
    let container = "/spec/template/spec/containers/0";
    let (listen, operations) = if replicas == 1 {
        (
            format!("127.0.0.1:{http_port}"),
            vec![
                format!("{{op: replace, path: {container}/ports/0/containerPort, value: {http_port}}}"),
                format!("{{op: add, path: {container}/livenessProbe/httpGet/host, value: 127.0.0.1}}"),
                format!("{{op: add, path: {container}/readinessProbe/httpGet/host, value: 127.0.0.1}}"),
            ],
        )
    } else {
        (
            "127.0.0.1:0".to_owned(),
            ["ports", "livenessProbe", "readinessProbe"]
                .map(|field| format!("{{op: remove, path: {container}/{field}}}"))
                .to_vec(),
        )
    };
    let http_patch: Vec<String> = operations.iter().map(|op| format!("      - {op}")).collect();
    let http_patch = http_patch.join("\n");
    Ok(format!(
        r#"# config/{base} as shipped, pointed at the local environment (pods use hostNetwork here).
resources: ["{config}"]
namespace: {namespace}
images: [{{name: vaultsync, newName: vaultsync, newTag: dev}}]
patches:
  # Host networking is outside every Pod Security level but `privileged`; the shipped namespace
  # enforces `restricted`, which the shipped pod template meets (tests/cluster checks it).
  - target: {{kind: Namespace}}
    patch: |-
      apiVersion: v1
      kind: Namespace
      metadata:
        name: any
        labels: {{pod-security.kubernetes.io/enforce: privileged}}
  - target: {{kind: Deployment, name: vaultsync}}
    patch: |-
      apiVersion: apps/v1
      kind: Deployment
      metadata: {{name: vaultsync}}
      spec:
        replicas: {replicas}
        template:
          spec:
            hostNetwork: true
            containers:
              - name: vaultsync
                env:
                  - {{name: VAULTSYNC_VAULT_ADDRESS, value: "{vault}"}}
                  - {{name: VAULTSYNC_METRICS_ADDRESS, value: "{listen}"}}
                  - {{name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}}
                  - {{name: KUBERNETES_SERVICE_PORT, value: "{api_port}"}}
  # The HTTP endpoints on loopback: the kubelet would probe the node's address, not loopback.
  - target: {{kind: Deployment, name: vaultsync}}
    patch: |-
{http_patch}
"#,
        config = config.display(),
        vault = env.vault_addr,
    ))
}

/// Imports the operator image (built by [`image::operator`]) into the node, applies the overlay
/// of `config/<base>` in `namespace` and waits until the operator's Deployment has rolled out.
/// `config/default` brings its namespace and the CRD; for another base, as a cluster administrator
/// would first, `config/crd` is applied and `namespace` created unless it exists.
pub fn install(env: &Env, archive: &image::Archive, base: &str, namespace: &str, replicas: u32) -> Result<Installed> {
    env.import_image(&archive.path)?;
    if base != "default" {
        let crd = workspace_root().join("config/crd");
        run_ok(
            env.kubectl().arg("apply").arg("-k").arg(&crd),
            "kubectl apply -k config/crd",
        )?;
        run_ok(
            env.kubectl().args([
                "wait",
                "--for=condition=established",
                "--timeout=60s",
                "crd/vaultsecrets.vaultsync.dev",
            ]),
            "kubectl wait for the CRD",
        )?;
        let out = env.kubectl().args(["create", "namespace", namespace]).output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && !err.contains("AlreadyExists") {
            bail!("kubectl create namespace {namespace}: {}", err.trim());
        }
    }
    let http_port = free_port()?;
    let overlay = env.dir.join(format!("overlay-{base}"));
    fs::create_dir_all(&overlay)?;
    let kustomization = self::overlay(env, &overlay.canonicalize()?, base, namespace, replicas, http_port)?;
    fs::write(overlay.join("kustomization.yaml"), kustomization)?;
    run_ok(env.kubectl().arg("apply").arg("-k").arg(&overlay), "kubectl apply -k")?;
    wait_for_rollout(env, namespace)?;
    Ok(Installed {
        overlay,
        namespace: namespace.to_owned(),
        http: (replicas == 1).then(|| format!("http://127.0.0.1:{http_port}")),
    })
}

/// The values [`install_helm`] gives `charts/vaultsync`: the image imported here, one replica,
/// and what this environment needs as [`overlay`] does (host networking, OpenBao's and
/// the API server's loopback addresses, a free loopback port for the HTTP endpoints, which the
/// chart's probes then target).
fn helm_values(env: &Env, http_port: u16) -> Result<String> {
    let api = env.api_server_url();
    let api_port = api.rsplit(':').next().context("the API server URL has no port")?;
    Ok(format!(
        r#"# charts/vaultsync with its defaults, pointed at the local environment (pods use hostNetwork).
replicaCount: 1
image: {{repository: vaultsync, tag: dev}}
vault: {{address: "{vault}"}}
hostNetwork: true
http: {{bindAddress: 127.0.0.1, port: {http_port}}}
extraEnv:
  - {{name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}}
  - {{name: KUBERNETES_SERVICE_PORT, value: "{api_port}"}}
"#,
        vault = env.vault_addr,
    ))
}

/// Imports the operator image into the node and installs `charts/vaultsync` with `helm` as
/// release `vaultsync` in `namespace` (created by helm) with [`helm_values`], then waits until
/// the operator's Deployment has rolled out. One replica: see [`overlay`] for why.
pub fn install_helm(env: &Env, archive: &image::Archive, helm: &Path, namespace: &str) -> Result<Installed> {
    env.import_image(&archive.path)?;
    let http_port = free_port()?;
    let dir = env.dir.join("helm");
    fs::create_dir_all(&dir)?;
    let values = dir.join("values.yaml");
    fs::write(&values, helm_values(env, http_port)?)?;
    let mut cmd = Command::new(helm);
    cmd.env("KUBECONFIG", &env.kubeconfig)
        .args(["install", "vaultsync"])
        .arg(workspace_root().join("charts/vaultsync"))
        .args(["--namespace", namespace, "--create-namespace", "--values"])
        .arg(&values);
    run_ok(&mut cmd, "helm install vaultsync charts/vaultsync")?;
    wait_for_rollout(env, namespace)?;
    Ok(Installed {
        overlay: dir,
        namespace: namespace.to_owned(),
        http: Some(format!("http://127.0.0.1:{http_port}")),
    })
}

fn wait_for_rollout(env: &Env, namespace: &str) -> Result<()> {
    let rollout = env
        .kubectl()
        .args([
            "rollout",
            "status",
            "deployment/vaultsync",
            "--timeout=180s",
            "-n",
            namespace,
        ])
        .output()?;
    if !rollout.status.success() {
        bail!(
            "the operator did not roll out in {namespace}: {}\n{}",
            String::from_utf8_lossy(&rollout.stderr).trim(),
            diagnose(env, namespace)
        );
    }
    Ok(())
}

/// The pods of `namespace` and the tail of each one's operator log, for failure messages.
pub fn diagnose(env: &Env, namespace: &str) -> String {
    let pods = env
        .kubectl()
        .args([
            "get",
            "pods",
            "-n",
            namespace,
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    let mut text = String::new();
    for pod in pods.split_whitespace() {
        let log = env.container_log(namespace, pod, "vaultsync");
        let lines: Vec<&str> = log.lines().collect();
        text.push_str(&format!(
            "--- {pod}, last lines of its log:\n{}\n",
            lines[lines.len().saturating_sub(20)..].join("\n")
        ));
    }
    let described = env
        .kubectl()
        .args(["get", "pods,events", "-n", namespace])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    format!("{described}\n{text}")
}

/// The path of `to` relative to the directory `from` (both absolute).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    to[common..].iter().for_each(|part| path.push(part));
    path
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn run_ok(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_to_the_common_ancestor() {
        assert_eq!(
            relative(Path::new("/tmp/env/overlay"), Path::new("/work/main/config/default")),
            Path::new("../../../work/main/config/default")
        );
        assert_eq!(
            relative(
                Path::new("/work/main/target/env/o"),
                Path::new("/work/main/config/default")
            ),
            Path::new("../../../config/default")
        );
    }
}

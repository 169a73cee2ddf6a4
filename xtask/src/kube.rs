//! etcd, kube-apiserver and kube-controller-manager.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Result;

use crate::binaries::Binaries;
use crate::certs::Pki;
use crate::http;
use crate::process::Proc;

/// Process name of etcd (log and pid file).
pub(crate) const ETCD: &str = "etcd";
/// Process name of kube-apiserver.
pub(crate) const APISERVER: &str = "kube-apiserver";
/// Process name of kube-controller-manager.
pub(crate) const CONTROLLER_MANAGER: &str = "kube-controller-manager";

const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Loopback ports of the control plane.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KubePorts {
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub apiserver: u16,
    pub controller_manager: u16,
}

/// Starts etcd and waits until it reports healthy.
pub(crate) fn start_etcd(dir: &Path, bins: &Binaries, ports: KubePorts, detached: bool) -> Result<Proc> {
    let client = format!("http://127.0.0.1:{}", ports.etcd_client);
    let peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
    let mut cmd = Command::new(&bins.etcd);
    cmd.arg("--name=vaultsync")
        .arg(format!("--data-dir={}", dir.join("etcd").display()))
        .arg(format!("--listen-client-urls={client}"))
        .arg(format!("--advertise-client-urls={client}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=vaultsync={peer}"))
        // Throwaway data: skip fsync; 1 GiB is a ceiling, not an allocation.
        .args([
            "--unsafe-no-fsync",
            "--quota-backend-bytes=1073741824",
            "--log-level=warn",
        ]);
    let mut etcd = Proc::spawn(dir, ETCD, cmd, detached)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], ports.etcd_client));
    etcd.wait_until("etcd /health", READY_TIMEOUT, || {
        Ok(http::request(addr, "GET", "/health", None, None)?.status == 200)
    })?;
    Ok(etcd)
}

/// Starts kube-apiserver and waits until `/readyz` is ok.
pub(crate) fn start_apiserver(
    dir: &Path,
    bins: &Binaries,
    ports: KubePorts,
    kubeconfig: &Path,
    detached: bool,
) -> Result<Proc> {
    let pki = Pki::at(dir);
    let mut cmd = Command::new(&bins.kube_apiserver);
    cmd.arg(format!("--etcd-servers=http://127.0.0.1:{}", ports.etcd_client))
        .arg(format!("--secure-port={}", ports.apiserver))
        .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
        .arg(format!("--cert-dir={}", dir.join("apiserver").display()))
        .arg(format!("--tls-cert-file={}", pki.serving_cert().display()))
        .arg(format!("--tls-private-key-file={}", pki.serving_key().display()))
        .arg(format!("--client-ca-file={}", pki.ca_cert().display()))
        .arg(format!(
            "--service-account-issuer=https://127.0.0.1:{}/",
            ports.apiserver
        ))
        .arg(format!("--service-account-key-file={}", pki.sa_pub().display()))
        .arg(format!("--service-account-signing-key-file={}", pki.sa_key().display()))
        .args([
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            "--authorization-mode=RBAC",
            "--profiling=false",
            // The lease reconciler would publish 127.0.0.1 as the `kubernetes` Service endpoint,
            // which validation rejects (loopback), logging an error every 10 s. No Pod runs here.
            "--endpoint-reconciler-type=none",
        ]);
    let mut apiserver = Proc::spawn(dir, APISERVER, cmd, detached)?;
    apiserver.wait_until("kube-apiserver /readyz", READY_TIMEOUT, || {
        Ok(quiet(kubectl(bins, kubeconfig).args([
            "get",
            "--raw=/readyz",
            "--request-timeout=5s",
        ])))
    })?;
    Ok(apiserver)
}

/// Starts kube-controller-manager and waits until its serviceaccount controller has created the
/// `default` ServiceAccount in namespace `default`.
pub(crate) fn start_controller_manager(
    dir: &Path,
    bins: &Binaries,
    ports: KubePorts,
    kubeconfig: &Path,
    detached: bool,
) -> Result<Proc> {
    let pki = Pki::at(dir);
    let mut cmd = Command::new(&bins.kube_controller_manager);
    cmd.args(component_args(
        dir,
        kubeconfig,
        ports.controller_manager,
        "controller-manager",
    ))
    .arg("--leader-elect=false")
    .arg(format!("--service-account-private-key-file={}", pki.sa_key().display()))
    .arg(format!("--root-ca-file={}", pki.ca_cert().display()))
    .arg("--profiling=false");
    let mut kcm = Proc::spawn(dir, CONTROLLER_MANAGER, cmd, detached)?;
    kcm.wait_until("the default ServiceAccount in namespace default", READY_TIMEOUT, || {
        Ok(quiet(kubectl(bins, kubeconfig).args([
            "get",
            "serviceaccount",
            "default",
            "--namespace=default",
        ])))
    })?;
    Ok(kcm)
}

/// The arguments kube-controller-manager and kube-scheduler share: the admin `kubeconfig`, and
/// their own secure port on loopback with delegated authn/authz (`/metrics` with the admin
/// certificate; certificates in `DIR/CERT_DIR`). The client CA is given directly: looking it up in
/// the extension-apiserver-authentication ConfigMap fails forever (and noisily) because there is
/// no request-header CA.
pub(crate) fn component_args(dir: &Path, kubeconfig: &Path, port: u16, cert_dir: &str) -> Vec<String> {
    let kubeconfig = kubeconfig.display();
    vec![
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        "--authentication-skip-lookup=true".into(),
        format!("--client-ca-file={}", Pki::at(dir).ca_cert().display()),
        format!("--secure-port={port}"),
        "--bind-address=127.0.0.1".into(),
        format!("--cert-dir={}", dir.join(cert_dir).display()),
    ]
}

/// A `kubectl` command using `kubeconfig`.
pub(crate) fn kubectl(bins: &Binaries, kubeconfig: &Path) -> Command {
    let mut cmd = Command::new(&bins.kubectl);
    cmd.env("KUBECONFIG", kubeconfig);
    cmd
}

/// Runs `cmd` without output; true when it succeeds.
fn quiet(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The kubeconfig path of an environment directory.
pub(crate) fn kubeconfig_path(dir: &Path) -> PathBuf {
    dir.join("kubeconfig")
}

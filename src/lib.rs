//! vaultsync: a Kubernetes operator that keeps Secrets in sync with HashiCorp Vault and OpenBao.

pub mod api;
pub mod backoff;
pub mod cli;
pub mod controller;
pub mod events;
pub mod hash;
pub mod http;
pub mod leader;
pub mod memory;
pub mod metrics;
pub mod reasons;
pub mod rollout;
pub mod template;
pub mod vault;

/// Field manager for every write, and the value of [`MANAGED_BY_LABEL`].
pub const MANAGER: &str = "vaultsync";

/// Label that marks Secrets written by vaultsync (the controller watches only those).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// Annotation on a written Secret: keyed hash of everything vaultsync applied to it.
pub const APPLIED_HASH_ANNOTATION: &str = "vaultsync.dev/applied-hash";

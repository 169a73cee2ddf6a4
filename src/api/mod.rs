//! The `VaultSecret` custom resource (`vaultsync.dev/v1alpha1`).

mod auth;
mod duration;
mod paths;
mod source;
mod spec;
mod status;

pub use auth::*;
pub use duration::{DurationError, parse_duration};
pub use paths::{RESERVED_SEGMENTS, check_auth_mount, check_source};
pub use source::*;
pub use spec::*;
pub use status::*;

use kube::CustomResourceExt;

/// API group of every vaultsync resource.
pub const GROUP: &str = "vaultsync.dev";

/// The CRD manifest as YAML, exactly as `vaultsync crd` prints it and `crds/vaultsecret.yaml` holds it.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&VaultSecret::crd())
}

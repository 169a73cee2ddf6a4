//! Vault's JWT auth (`role_type=jwt`) with a ServiceAccount token: Vault checks the token's
//! signature against the cluster's issuer keys and never calls the API server, so it works for a
//! Vault that cannot reach it (private control-plane endpoints).

use super::service_account::{self, TokenLogin};
use super::{Cluster, Resolved};
use crate::api::JwtAuth;

pub(super) async fn resolve<'a, C: Cluster>(
    spec: &'a JwtAuth,
    cluster: &'a C,
) -> Result<Resolved<'a, C::Error>, C::Error> {
    let login = TokenLogin {
        method: "jwt",
        mount: &spec.mount,
        role: &spec.role,
        token: spec.token_request(),
    };
    service_account::resolve(login, cluster).await
}

//! Vault's Kubernetes auth: Vault sends the presented ServiceAccount token to the API server's
//! TokenReview (itself, or with the reviewer token it is configured with).

use super::service_account::{self, TokenLogin};
use super::{Cluster, Resolved};
use crate::api::KubernetesAuth;

pub(super) async fn resolve<'a, C: Cluster>(
    spec: &'a KubernetesAuth,
    cluster: &'a C,
) -> Result<Resolved<'a, C::Error>, C::Error> {
    let login = TokenLogin {
        method: "kubernetes",
        mount: &spec.mount,
        role: &spec.role,
        token: spec.token_request(),
    };
    service_account::resolve(login, cluster).await
}

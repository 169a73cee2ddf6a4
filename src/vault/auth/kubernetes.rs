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
        hint,
    };
    service_account::resolve(login, cluster).await
}

/// OpenBao's and Vault's refusals of a Kubernetes login (checked against OpenBao 2.7), in terms
/// of the role and config that cause them. A bare "permission denied" is the TokenReview failing:
/// Vault had no reviewer allowed to call it.
fn hint(errors: &str) -> Option<&'static str> {
    Some(match errors {
        "permission denied" => {
            "Vault's TokenReview of the token was refused: a Vault outside the cluster needs \
             token_reviewer_jwt of a ServiceAccount bound to system:auth-delegator in its \
             Kubernetes auth config, one inside needs that binding for its own ServiceAccount; \
             see docs/vault-setup.md"
        }
        e if e.contains("invalid audience") => {
            "the role's audience must be one of spec.auth.kubernetes.audiences (default: vault)"
        }
        e if e.contains("namespace not authorized") => {
            "the role's bound_service_account_namespaces does not include this namespace"
        }
        e if e.contains("service account name not authorized") => {
            "the role's bound_service_account_names does not include spec.auth.kubernetes.serviceAccountName"
        }
        e if e.starts_with("invalid role name") => "spec.auth.kubernetes.role names no role of this auth mount",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::hint;

    #[test]
    fn openbaos_refusals_name_their_cause() {
        let cases = [
            ("permission denied", "token_reviewer_jwt"),
            (
                "invalid audience (aud) claim: audience claim does not match any expected audience",
                "spec.auth.kubernetes.audiences",
            ),
            ("namespace not authorized", "bound_service_account_namespaces"),
            ("service account name not authorized", "bound_service_account_names"),
            ("invalid role name \"x\"", "spec.auth.kubernetes.role"),
        ];
        crate::vault::auth::assert_hints(hint, &cases);
    }
}

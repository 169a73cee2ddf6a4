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
        hint,
    };
    service_account::resolve(login, cluster).await
}

/// OpenBao's and Vault's refusals of a JWT login (checked against OpenBao 2.7), in terms of the
/// role and config that cause them.
fn hint(errors: &str) -> Option<&'static str> {
    Some(match errors {
        e if e.contains("invalid audience") => {
            "the role's bound_audiences must include one of spec.auth.jwt.audiences (default: vault)"
        }
        e if e.contains("invalid subject") => {
            "the role's bound_subject must be system:serviceaccount:<namespace>:<spec.auth.jwt.serviceAccountName>"
        }
        e if e.contains("invalid issuer") => {
            "the auth method's bound_issuer must be the cluster's issuer \
             (kubectl get --raw /.well-known/openid-configuration)"
        }
        e if e.contains("no known key") => {
            "the auth method's jwt_validation_pubkeys (or oidc_discovery_url) must give the \
             cluster's ServiceAccount signing keys (kubectl get --raw /openid/v1/jwks)"
        }
        e if e.contains("could not be found") => "spec.auth.jwt.role names no role of this auth mount",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::hint;

    #[test]
    fn openbaos_refusals_name_their_cause() {
        let cases = [
            (
                "error validating token: invalid audience (aud) claim: audience claim does not match any expected audience",
                "spec.auth.jwt.audiences",
            ),
            ("error validating token: invalid subject (sub) claim", "bound_subject"),
            ("error validating token: invalid issuer (iss) claim", "bound_issuer"),
            (
                "error validating token: error verifying token signature: no known key successfully validated the token signature",
                "jwt_validation_pubkeys",
            ),
            ("role \"x\" could not be found", "spec.auth.jwt.role"),
        ];
        crate::vault::auth::assert_hints(hint, &cases);
    }
}

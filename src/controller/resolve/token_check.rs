//! Proof that a ServiceAccount token minted for a Vault login cannot be used against the
//! Kubernetes API: the API server itself is asked (a `SelfSubjectReview` presented with that token
//! alone). Exact whatever the API server's `--api-audiences` and issuer are, needs no RBAC grant
//! (every authenticated user may review itself), and costs one request per login.

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{Api, PostParams};
use kube::config::AuthInfo;

use super::super::error::{Error, Result};

/// Whether the Kubernetes API server described by `base` authenticates `token`. Fails closed: an
/// answer other than "authenticated" or "unauthorized" is an error, and the token is not used.
pub async fn accepted_by_api_server(base: &kube::Config, token: &str) -> Result<bool> {
    let mut config = base.clone();
    // Nothing of the operator's own identity: no client certificate, token file or extra header.
    config.auth_info = AuthInfo {
        token: Some(token.to_owned().into()),
        ..Default::default()
    };
    config.headers.clear();
    let client = kube::Client::try_from(config).map_err(Error::kube("build a client to review a token"))?;
    let review = Api::<SelfSubjectReview>::all(client)
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await;
    match review {
        Ok(_) => Ok(true),
        // Authenticated, but not allowed to review itself: accepted all the same.
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 401 => Ok(false),
        Err(e) => Err(Error::kube("review the requested ServiceAccount token")(e)),
    }
}

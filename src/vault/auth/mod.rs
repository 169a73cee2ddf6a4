//! Vault auth methods, one file each: from the method's spec, the [`Identity`] that tells its
//! logins apart and the [`Credential`] a login presents. [`resolve`] is the one dispatch point;
//! a new method is a variant of [`AuthMethod`], a file here, and its arm below.
//!
//! What a method needs from Kubernetes (a ServiceAccount, a token of it, a credential Secret) it
//! asks of a [`Cluster`], which the controller implements for the VaultSecret's own namespace
//! with the checks of its trust boundary. This layer never calls the API server itself.

mod approle;
mod jwt;
mod kubernetes;
mod operator;
mod service_account;
mod token;

use std::future::Future;

use futures::future::BoxFuture;

use super::{Credential, Identity};
use crate::api::{AuthMethod, SecretKeyRef, TokenRequestSpec};

/// What auth methods need from Kubernetes, in the namespace of the VaultSecret being synced.
pub trait Cluster: Sync {
    /// The controller's error, which a failed request to Kubernetes is reported as.
    type Error: Send + 'static;

    /// The namespace every reference is resolved in.
    fn namespace(&self) -> &str;

    /// The UID of ServiceAccount `name` (a recreated ServiceAccount is another identity).
    fn service_account_uid(&self, name: &str, field: &str) -> impl Future<Output = Result<String, Self::Error>> + Send;

    /// A short-lived token of the ServiceAccount `spec` names, one the API server refuses.
    fn service_account_token(
        &self,
        spec: TokenRequestSpec<'_>,
    ) -> impl Future<Output = Result<String, Self::Error>> + Send;

    /// The value at `r` (`field` names it in messages).
    fn secret_value(
        &self,
        r: &SecretKeyRef,
        field: &str,
    ) -> impl Future<Output = Result<SecretValue, Self::Error>> + Send;

    /// The operator's own token, where the administrator allows it for this namespace.
    fn operator_token(&self) -> Result<String, Self::Error>;
}

/// A value read from a credential Secret, and what identifies that version of it.
pub struct SecretValue {
    pub value: String,
    pub uid: String,
    pub resource_version: String,
}

/// Makes the credential of a login, should one be needed: lazily (a ServiceAccount token is
/// requested only then), and again for a retry.
pub type MakeCredential<'a, E> = Box<dyn Fn() -> BoxFuture<'a, Result<Credential, E>> + Send + Sync + 'a>;

/// An identity and how to log in as it.
pub struct Resolved<'a, E> {
    pub identity: Identity,
    pub credential: MakeCredential<'a, E>,
}

impl<'a, E: 'a> Resolved<'a, E> {
    fn new<F>(identity: Identity, credential: impl Fn() -> F + Send + Sync + 'a) -> Self
    where
        F: Future<Output = Result<Credential, E>> + Send + 'a,
    {
        Resolved {
            identity,
            credential: Box::new(move || Box::pin(credential())),
        }
    }
}

/// Resolves `method` (`None`: the operator's own token) against `cluster`.
pub async fn resolve<'a, C: Cluster>(
    method: Option<AuthMethod<'a>>,
    cluster: &'a C,
) -> Result<Resolved<'a, C::Error>, C::Error> {
    match method {
        None => operator::resolve(cluster),
        Some(AuthMethod::Kubernetes(spec)) => kubernetes::resolve(spec, cluster).await,
        Some(AuthMethod::Jwt(spec)) => jwt::resolve(spec, cluster).await,
        Some(AuthMethod::AppRole(spec)) => approle::resolve(spec, cluster).await,
        Some(AuthMethod::Token(spec)) => token::resolve(spec, cluster).await,
    }
}

/// Each of OpenBao's answers in `cases` gets a hint naming the second item; other text none.
#[cfg(test)]
fn assert_hints(hint: super::login::Hint, cases: &[(&str, &str)]) {
    for (errors, named) in cases {
        assert!(hint(errors).is_some_and(|h| h.contains(named)), "{errors}");
    }
    assert_eq!(hint("something else"), None);
}

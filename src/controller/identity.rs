//! Which Vault identity a VaultSecret logs in as. Every reference (ServiceAccount, credential
//! Secrets) is resolved in the VaultSecret's own namespace; nothing can point elsewhere.

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, PostParams};

use super::Context;
use super::error::{Error, Result};
use super::token_check;
use super::trust::{self, Refusal};
use crate::api::{Auth, KubernetesAuth, SecretKeyRef, VaultSecret};
use crate::vault::{Credential, Identity};

/// How to obtain the credential for an identity, should a login be needed. For AppRole and
/// token auth it holds the value read from the Secret; it lives only as long as one sync.
#[derive(Clone)]
pub enum Login {
    Operator(String),
    Kubernetes {
        namespace: String,
        auth: KubernetesAuth,
    },
    AppRole {
        mount: String,
        role_id: String,
        secret_id: String,
    },
    Token(String),
}

impl Login {
    /// The credential for a login, requesting a ServiceAccount token when that is the method.
    pub async fn credential(self, ctx: &Context) -> Result<Credential> {
        Ok(match self {
            Login::Operator(token) | Login::Token(token) => Credential::Token(token),
            Login::AppRole {
                mount,
                role_id,
                secret_id,
            } => Credential::AppRole {
                mount,
                role_id,
                secret_id,
            },
            Login::Kubernetes { namespace, auth } => {
                let jwt = request_token(ctx, &namespace, &auth).await?;
                Credential::Kubernetes {
                    mount: auth.mount,
                    role: auth.role,
                    jwt,
                }
            }
        })
    }
}

/// Resolves `spec.auth` (or the operator's identity, where allowed) to an identity and a way to
/// log in.
pub async fn resolve(vs: &VaultSecret, ctx: &Context) -> Result<(Identity, Login)> {
    let ns = vs.namespace().unwrap_or_default();
    match vs.spec.auth.as_deref() {
        None => operator(&ns, ctx),
        Some(Auth {
            kubernetes: Some(k), ..
        }) => {
            let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &ns);
            let sa = api
                .get_opt(&k.service_account_name)
                .await
                .map_err(Error::kube("read ServiceAccount"))?;
            let sa = sa.ok_or_else(|| {
                Error::ServiceAccountNotFound(format!(
                    "ServiceAccount {} (spec.auth.kubernetes.serviceAccountName) not found in namespace {ns}",
                    k.service_account_name
                ))
            })?;
            let identity = Identity::Kubernetes {
                mount: k.mount.clone(),
                role: k.role.clone(),
                namespace: ns.clone(),
                service_account: k.service_account_name.clone(),
                uid: sa.uid().unwrap_or_default(),
                audiences: k.audiences.clone(),
            };
            Ok((
                identity,
                Login::Kubernetes {
                    namespace: ns,
                    auth: k.clone(),
                },
            ))
        }
        Some(Auth { app_role: Some(a), .. }) => {
            trust::check_secret_ref(&a.secret_id_ref, "spec.auth.appRole.secretIdRef")?;
            let (secret_id, secret_uid, secret_version) =
                secret_value(ctx, &ns, &a.secret_id_ref, "spec.auth.appRole.secretIdRef").await?;
            let identity = Identity::AppRole {
                mount: a.mount.clone(),
                role_id: a.role_id.clone(),
                namespace: ns.clone(),
                secret: a.secret_id_ref.name.clone(),
                secret_uid,
                secret_version,
            };
            Ok((
                identity,
                Login::AppRole {
                    mount: a.mount.clone(),
                    role_id: a.role_id.clone(),
                    secret_id,
                },
            ))
        }
        Some(Auth { token: Some(t), .. }) => {
            trust::check_secret_ref(&t.secret_ref, "spec.auth.token.secretRef")?;
            let (token, secret_uid, secret_version) =
                secret_value(ctx, &ns, &t.secret_ref, "spec.auth.token.secretRef").await?;
            Ok((
                Identity::Token {
                    namespace: ns.clone(),
                    secret: t.secret_ref.name.clone(),
                    secret_uid,
                    secret_version,
                },
                Login::Token(token),
            ))
        }
        Some(_) => Err(Error::InvalidSpec("spec.auth sets no method".into())),
    }
}

/// The operator's own token, only for namespaces on the allow-list.
fn operator(ns: &str, ctx: &Context) -> Result<(Identity, Login)> {
    if !trust::operator_allowed(ns, &ctx.settings) {
        return Err(Error::NoIdentity(format!(
            "spec.auth is required: the operator's own Vault identity is not enabled for namespace {ns} (--default-identity-namespaces)"
        )));
    }
    let token = ctx.settings.vault_token.clone().ok_or_else(|| {
        Error::NoIdentity(
            "spec.auth is required: the operator was started without a Vault token (--vault-token-file)".into(),
        )
    })?;
    Ok((Identity::Operator, Login::Operator(token)))
}

/// A short-lived token of the ServiceAccount, from the TokenRequest API (never a long-lived
/// token Secret).
async fn request_token(ctx: &Context, ns: &str, auth: &KubernetesAuth) -> Result<String> {
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), ns);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: auth.audiences.clone(),
            expiration_seconds: Some(auth.token_expiration_seconds),
            bound_object_ref: None,
        },
        ..Default::default()
    };
    let issued = api
        .create_token_request(&auth.service_account_name, &PostParams::default(), &request)
        .await;
    let issued = issued.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 404 => Error::ServiceAccountNotFound(format!(
            "ServiceAccount {} not found in namespace {ns}",
            auth.service_account_name
        )),
        e => Error::Kube {
            action: "request ServiceAccount token",
            source: e,
        },
    })?;
    let token = issued
        .status
        .map(|s| s.token)
        .ok_or_else(|| Error::InvalidSpec("the TokenRequest returned no token".into()))?;
    if token_check::accepted_by_api_server(&ctx.kube_config, &token).await? {
        // Dropped here: a token that authenticates to the Kubernetes API never leaves the operator.
        return Err(Error::NotAllowed {
            refusal: Refusal::Audience,
            message: format!(
                "spec.auth.kubernetes.audiences {:?}: the Kubernetes API server accepts a token with these audiences, so it was discarded and no login was attempted",
                auth.audiences
            ),
        });
    }
    Ok(token)
}

/// The value at `r` and the Secret's uid and resourceVersion (which identify the credential).
async fn secret_value(ctx: &Context, ns: &str, r: &SecretKeyRef, field: &str) -> Result<(String, String, String)> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let secret = api
        .get_opt(&r.name)
        .await
        .map_err(Error::kube("read credential Secret"))?;
    let secret = secret
        .ok_or_else(|| Error::CredentialSecret(format!("Secret {} ({field}) not found in namespace {ns}", r.name)))?;
    let value = secret.data.as_ref().and_then(|d| d.get(&r.key));
    let value =
        value.ok_or_else(|| Error::CredentialSecret(format!("Secret {} ({field}) has no key {:?}", r.name, r.key)))?;
    let value = String::from_utf8(value.0.clone())
        .map_err(|_| Error::CredentialSecret(format!("Secret {} ({field}) key {:?} is not UTF-8", r.name, r.key)))?;
    Ok((
        value.trim().to_owned(),
        secret.uid().unwrap_or_default(),
        secret.resource_version().unwrap_or_default(),
    ))
}

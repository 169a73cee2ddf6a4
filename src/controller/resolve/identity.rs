//! Which Vault identity a VaultSecret logs in as: the Kubernetes side of [`crate::vault::auth`].
//! Every reference (ServiceAccount, credential Secrets) is resolved in the VaultSecret's own
//! namespace; nothing can point elsewhere.

use std::time::Instant;

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, PostParams};

use super::super::Context;
use super::super::error::{Error, Result};
use super::token_check;
use super::trust::{self, Refusal};
use crate::api::{SecretKeyRef, TokenRequestSpec, VaultSecret};
use crate::vault::auth::{self, Resolved, SecretValue};

/// The Kubernetes side of Vault logins, for one VaultSecret: every reference resolves in its
/// namespace, through the checks of the trust boundary.
pub struct Kube<'a> {
    ctx: &'a Context,
    namespace: String,
}

impl<'a> Kube<'a> {
    pub fn new(vs: &VaultSecret, ctx: &'a Context) -> Self {
        Kube {
            ctx,
            namespace: vs.namespace().unwrap_or_default(),
        }
    }
}

/// Resolves `spec.auth` (or the operator's identity, where allowed) to an identity and a way to
/// log in.
pub async fn resolve<'a>(vs: &'a VaultSecret, kube: &'a Kube<'a>) -> Result<Resolved<'a, Error>> {
    let method = match vs.spec.auth.as_deref() {
        None => None,
        Some(auth) => Some(
            auth.method()
                .ok_or_else(|| Error::InvalidSpec("spec.auth must set exactly one method".into()))?,
        ),
    };
    auth::resolve(method, kube).await
}

impl auth::Cluster for Kube<'_> {
    type Error = Error;

    fn namespace(&self) -> &str {
        &self.namespace
    }

    async fn service_account_uid(&self, name: &str, field: &str) -> Result<String> {
        let ns = &self.namespace;
        let uids = &self.ctx.service_account_uids;
        if let Some(uid) = uids.get(ns, name, Instant::now()) {
            return Ok(uid);
        }
        let api: Api<ServiceAccount> = Api::namespaced(self.ctx.client.clone(), ns);
        let sa = api.get_opt(name).await.map_err(Error::kube("read ServiceAccount"))?;
        let sa = sa.ok_or_else(|| {
            Error::ServiceAccountNotFound(format!("ServiceAccount {name} ({field}) not found in namespace {ns}"))
        })?;
        let uid = sa.uid().unwrap_or_default();
        uids.note(ns, name, &uid, Instant::now());
        Ok(uid)
    }

    async fn service_account_token(&self, spec: TokenRequestSpec<'_>) -> Result<String> {
        request_token(self.ctx, &self.namespace, spec).await
    }

    async fn secret_value(&self, r: &SecretKeyRef, field: &str) -> Result<SecretValue> {
        trust::check_secret_ref(r, field)?;
        secret_value(self.ctx, &self.namespace, r, field).await
    }

    /// Only for namespaces on the allow-list.
    fn operator_token(&self) -> Result<String> {
        let ns = &self.namespace;
        if !trust::operator_allowed(ns, &self.ctx.settings) {
            return Err(Error::NoIdentity(format!(
                "spec.auth is required: the operator's own Vault identity is not enabled for namespace {ns} (--default-identity-namespaces)"
            )));
        }
        self.ctx.settings.vault_token.clone().ok_or_else(|| {
            Error::NoIdentity(
                "spec.auth is required: the operator was started without a Vault token (--vault-token-file)".into(),
            )
        })
    }
}

/// A short-lived token of the ServiceAccount, from the TokenRequest API (never a long-lived
/// token Secret).
async fn request_token(ctx: &Context, ns: &str, spec: TokenRequestSpec<'_>) -> Result<String> {
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), ns);
    let request = TokenRequest {
        spec: k8s_openapi::api::authentication::v1::TokenRequestSpec {
            audiences: spec.audiences.to_vec(),
            expiration_seconds: Some(spec.expiration_seconds),
            bound_object_ref: None,
        },
        ..Default::default()
    };
    let issued = api
        .create_token_request(spec.service_account_name, &PostParams::default(), &request)
        .await;
    let issued = issued.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 404 => Error::ServiceAccountNotFound(format!(
            "ServiceAccount {} not found in namespace {ns}",
            spec.service_account_name
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
                "{}.audiences {:?}: the Kubernetes API server accepts a token with these audiences, so it was discarded and no login was attempted",
                spec.field, spec.audiences
            ),
        });
    }
    Ok(token)
}

/// The value at `r` and the Secret's uid and resourceVersion (which identify the credential).
async fn secret_value(ctx: &Context, ns: &str, r: &SecretKeyRef, field: &str) -> Result<SecretValue> {
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
    Ok(SecretValue {
        value: value.trim().to_owned(),
        uid: secret.uid().unwrap_or_default(),
        resource_version: secret.resource_version().unwrap_or_default(),
    })
}

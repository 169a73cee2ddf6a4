//! `spec.auth`: how a VaultSecret logs in to Vault, always as an identity of its own namespace.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::paths::{NO_DOT_SEGMENTS_RULE, VAULT_PATH_PATTERN};
use super::spec::SecretKeyRef;

/// Exactly one login method.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("[has(self.kubernetes), has(self.jwt), has(self.appRole), has(self.token)].filter(x, x).size() == 1").message("auth sets exactly one method: kubernetes, jwt, appRole or token"))]
#[serde(rename_all = "camelCase")]
pub struct Auth {
    /// Vault's Kubernetes auth, as a ServiceAccount of this namespace (short-lived TokenRequest token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesAuth>,
    /// Vault's JWT auth, presenting a short-lived token of a ServiceAccount of this namespace: for a
    /// Vault that validates the cluster's tokens itself (issuer keys) and cannot reach the API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtAuth>,
    /// Vault's AppRole auth, with the secret ID from a Secret in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_role: Option<AppRoleAuth>,
    /// A Vault token from a Secret in this namespace (development, or setups without the others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenAuth>,
}

/// Login with Vault's Kubernetes auth method as a ServiceAccount of the VaultSecret's namespace.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesAuth {
    /// Vault role to log in as.
    #[schemars(length(min = 1, max = 256))]
    pub role: String,
    /// ServiceAccount in this namespace whose identity is used.
    #[serde(default = "default_service_account")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub service_account_name: String,
    /// Mount path of the Kubernetes auth method (under `auth/`).
    #[serde(default = "default_kubernetes_mount")]
    #[schemars(length(min = 1, max = 256), regex(pattern = VAULT_PATH_PATTERN))]
    #[x_kube(validation = Rule::new(NO_DOT_SEGMENTS_RULE).message("mount may not hold '.' or '..' segments"))]
    pub mount: String,
    /// Audiences of the requested ServiceAccount token; the Vault role's `audience` must match.
    /// Only audiences the operator's administrator allows (`--allowed-token-audiences`, default
    /// `vault`) are requested, and never one the Kubernetes API server accepts.
    #[serde(default = "default_audiences")]
    #[schemars(length(min = 1, max = 8), inner(length(min = 1, max = 256)))]
    pub audiences: Vec<String>,
    /// Lifetime of the requested ServiceAccount token in seconds (it is used once, to log in).
    /// At most the operator's `--max-token-expiration` (default 600).
    #[serde(default = "default_token_expiration")]
    #[schemars(range(min = 600, max = 86400))]
    pub token_expiration_seconds: i64,
}

/// Login with Vault's JWT auth method (`role_type=jwt`) with a ServiceAccount token of the
/// VaultSecret's namespace. Vault checks the token's signature against the cluster's issuer keys
/// (`jwks_url`, `oidc_discovery_url` or `jwt_validation_pubkeys`) and never calls the API server.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JwtAuth {
    /// Vault role to log in as; its `bound_audiences` must include one of `audiences`.
    #[schemars(length(min = 1, max = 256))]
    pub role: String,
    /// ServiceAccount in this namespace whose token is presented.
    #[serde(default = "default_service_account")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub service_account_name: String,
    /// Mount path of the JWT auth method (under `auth/`).
    #[serde(default = "default_jwt_mount")]
    #[schemars(length(min = 1, max = 256), regex(pattern = VAULT_PATH_PATTERN))]
    #[x_kube(validation = Rule::new(NO_DOT_SEGMENTS_RULE).message("mount may not hold '.' or '..' segments"))]
    pub mount: String,
    /// Audiences of the requested ServiceAccount token, as for `kubernetes`: only those the
    /// operator's administrator allows, and never one the Kubernetes API server accepts.
    #[serde(default = "default_audiences")]
    #[schemars(length(min = 1, max = 8), inner(length(min = 1, max = 256)))]
    pub audiences: Vec<String>,
    /// Lifetime of the requested ServiceAccount token in seconds (it is used once, to log in).
    /// At most the operator's `--max-token-expiration` (default 600).
    #[serde(default = "default_token_expiration")]
    #[schemars(range(min = 600, max = 86400))]
    pub token_expiration_seconds: i64,
}

/// The login methods of `spec.auth`, one variant per field: match it, never probe the fields.
#[derive(Clone, Copy, Debug)]
pub enum AuthMethod<'a> {
    Kubernetes(&'a KubernetesAuth),
    Jwt(&'a JwtAuth),
    AppRole(&'a AppRoleAuth),
    Token(&'a TokenAuth),
}

impl Auth {
    /// The one method set, or `None` for an object the schema's rule did not check (created
    /// before it existed) that sets none or several.
    pub fn method(&self) -> Option<AuthMethod<'_>> {
        // Destructured, so a new field does not compile until it has its variant.
        let Auth {
            kubernetes,
            jwt,
            app_role,
            token,
        } = self;
        let methods = [
            kubernetes.as_ref().map(AuthMethod::Kubernetes),
            jwt.as_ref().map(AuthMethod::Jwt),
            app_role.as_ref().map(AuthMethod::AppRole),
            token.as_ref().map(AuthMethod::Token),
        ];
        let mut set = methods.into_iter().flatten();
        match (set.next(), set.next()) {
            (Some(method), None) => Some(method),
            _ => None,
        }
    }
}

/// The ServiceAccount token a login presents (`kubernetes` and `jwt`).
#[derive(Clone, Copy, Debug)]
pub struct TokenRequestSpec<'a> {
    /// The field of `spec.auth` it comes from, for messages (`spec.auth.kubernetes`).
    pub field: &'static str,
    pub service_account_name: &'a str,
    pub audiences: &'a [String],
    pub expiration_seconds: i64,
}

impl KubernetesAuth {
    /// The ServiceAccount token this login presents.
    pub fn token_request(&self) -> TokenRequestSpec<'_> {
        TokenRequestSpec {
            field: "spec.auth.kubernetes",
            service_account_name: &self.service_account_name,
            audiences: &self.audiences,
            expiration_seconds: self.token_expiration_seconds,
        }
    }
}

impl JwtAuth {
    /// The ServiceAccount token this login presents.
    pub fn token_request(&self) -> TokenRequestSpec<'_> {
        TokenRequestSpec {
            field: "spec.auth.jwt",
            service_account_name: &self.service_account_name,
            audiences: &self.audiences,
            expiration_seconds: self.token_expiration_seconds,
        }
    }
}

/// Login with Vault's AppRole auth method.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppRoleAuth {
    /// Mount path of the AppRole auth method (under `auth/`).
    #[serde(default = "default_approle_mount")]
    #[schemars(length(min = 1, max = 256), regex(pattern = VAULT_PATH_PATTERN))]
    #[x_kube(validation = Rule::new(NO_DOT_SEGMENTS_RULE).message("mount may not hold '.' or '..' segments"))]
    pub mount: String,
    /// The role ID (not secret).
    #[schemars(length(min = 1, max = 256))]
    pub role_id: String,
    /// The secret ID, from a Secret in this namespace.
    pub secret_id_ref: SecretKeyRef,
}

/// A Vault token kept in a Secret.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TokenAuth {
    /// The Secret and key holding the token, in this namespace.
    pub secret_ref: SecretKeyRef,
}

fn default_service_account() -> String {
    "default".into()
}

fn default_kubernetes_mount() -> String {
    "kubernetes".into()
}

fn default_jwt_mount() -> String {
    "jwt".into()
}

fn default_approle_mount() -> String {
    "approle".into()
}

fn default_audiences() -> Vec<String> {
    vec!["vault".into()]
}

fn default_token_expiration() -> i64 {
    600
}

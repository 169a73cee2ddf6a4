//! Logging in: turning a credential into a Vault token, and renewing that token.

use std::time::Duration;

use vaultrs::api::AuthInfo;
use vaultrs::client::VaultClient;

use super::{Connection, Error, Result, client};

/// Secret material for one login. Used once and dropped; never printed.
pub enum Credential {
    /// A ready Vault token (the operator's own, or one from a Secret).
    Token(String),
    /// A ServiceAccount JWT for Vault's Kubernetes auth.
    Kubernetes { mount: String, role: String, jwt: String },
    /// AppRole role ID and secret ID.
    AppRole {
        mount: String,
        role_id: String,
        secret_id: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::Token(_) => "Credential::Token(..)",
            Credential::Kubernetes { .. } => "Credential::Kubernetes(..)",
            Credential::AppRole { .. } => "Credential::AppRole(..)",
        })
    }
}

/// A Vault token and what Vault said about its lifetime.
pub struct Token {
    /// Client authenticated with the token.
    pub client: VaultClient,
    /// Token lifetime at issue; `None` for tokens used as given (not renewed by vaultsync).
    pub ttl: Option<Duration>,
    /// Whether `renew-self` may extend it.
    pub renewable: bool,
    /// The token's accessor (safe to log), when known.
    pub accessor: Option<String>,
    /// Lifetime to ask for when renewing, if not `ttl`: a token picked up after a restart has
    /// `ttl` left of the `creation_ttl` it was issued with.
    pub increment: Option<Duration>,
}

/// Logs in with `credential` at `conn`.
pub async fn login(conn: &Connection, credential: Credential, timeout: Duration) -> Result<Token> {
    let anonymous = client::build(conn, "", timeout)?;
    let address = conn.address.as_str();
    let (method, info) = match credential {
        Credential::Token(token) => {
            let client = client::build(conn, &token, timeout)?;
            return Ok(Token {
                client,
                ttl: None,
                renewable: false,
                accessor: None,
                increment: None,
            });
        }
        Credential::Kubernetes { mount, role, jwt } => (
            "kubernetes",
            vaultrs::auth::kubernetes::login(&anonymous, &mount, &role, &jwt).await,
        ),
        Credential::AppRole {
            mount,
            role_id,
            secret_id,
        } => (
            "approle",
            vaultrs::auth::approle::login(&anonymous, &mount, &role_id, &secret_id).await,
        ),
    };
    let info = info.map_err(|e| login_error(e, address, method))?;
    token_from(conn, info, timeout)
}

/// Checks that `token` is still valid (`lookup-self`) and returns it with its remaining lifetime.
pub async fn adopt(conn: &Connection, token: &str, timeout: Duration) -> Result<Token> {
    let client = client::build(conn, token, timeout)?;
    let info = vaultrs::token::lookup_self(&client)
        .await
        .map_err(|e| Error::from_client(e, conn.address.as_str(), "lookup-self"))?;
    Ok(Token {
        client,
        ttl: (info.ttl > 0).then(|| Duration::from_secs(info.ttl)),
        renewable: info.renewable.unwrap_or(false),
        accessor: Some(info.accessor),
        increment: (info.creation_ttl > 0).then(|| Duration::from_secs(info.creation_ttl)),
    })
}

/// Extends the token of `client` by `increment`; returns the new lifetime.
pub async fn renew(client: &VaultClient, increment: Duration) -> Result<Duration> {
    let increment = format!("{}s", increment.as_secs());
    let info = vaultrs::token::renew_self(client, Some(&increment))
        .await
        .map_err(|e| Error::from_client(e, client.settings.address.as_str(), "renew-self"))?;
    Ok(Duration::from_secs(info.lease_duration))
}

fn token_from(conn: &Connection, info: AuthInfo, timeout: Duration) -> Result<Token> {
    let client = client::build(conn, &info.client_token, timeout)?;
    let ttl = (info.lease_duration > 0).then(|| Duration::from_secs(info.lease_duration));
    Ok(Token {
        client,
        ttl,
        renewable: info.renewable,
        accessor: Some(info.accessor),
        increment: None,
    })
}

/// A refused login is `LoginFailed` (bad role, bad credential, ServiceAccount not bound), not a
/// permission problem of the read that follows; an unreachable Vault stays `Unavailable`.
fn login_error(err: vaultrs::error::ClientError, address: &str, method: &str) -> Error {
    match Error::from_client(err, address, &format!("{method} login")) {
        Error::PermissionDenied { .. } => Error::LoginFailed {
            method: method.into(),
            detail: "permission denied".into(),
        },
        Error::Rejected { errors, .. } => Error::LoginFailed {
            method: method.into(),
            detail: errors,
        },
        Error::NotFound { .. } => Error::LoginFailed {
            method: method.into(),
            detail: "no such auth mount or role".into(),
        },
        other => other,
    }
}

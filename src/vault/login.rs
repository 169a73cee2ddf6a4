//! Logging in: turning a credential into a Vault token, and renewing that token.

use std::time::Duration;

use rustify::enums::RequestMethod;
use vaultrs::api::AuthInfo;
use vaultrs::client::VaultClient;

use super::raw::{Raw, send};
use super::{Connection, Error, Result, client};

/// Secret material for one login, made by the method's file under [`super::auth`]. Used once and
/// dropped; never printed.
pub enum Credential {
    /// A ready Vault token (the operator's own, or one from a Secret): no request to Vault.
    Token(String),
    /// A login request: `POST auth/<mount>/login` with `body` (which holds the secret).
    Login {
        /// The auth method, for messages and metrics (`kubernetes`, `jwt`, …).
        method: &'static str,
        mount: String,
        body: serde_json::Value,
        /// What the method knows a refusal's text to mean, for the `LoginFailed` message.
        hint: Hint,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Token(_) => f.write_str("Credential::Token(..)"),
            Credential::Login { method, mount, .. } => write!(f, "Credential::Login({method} at auth/{mount}, ..)"),
        }
    }
}

/// The likely cause behind a refused login's error text, in the words of the Vault-side set-up.
pub type Hint = fn(&str) -> Option<&'static str>;

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
    let (method, mount, body, hint) = match credential {
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
        Credential::Login {
            method,
            mount,
            body,
            hint,
        } => (method, mount, body, hint),
    };
    let anonymous = client::build(conn, "", timeout)?;
    let request = Raw {
        path: format!("auth/{}/login", mount.trim_matches('/')),
        method: RequestMethod::POST,
        body: Some(body),
    };
    let operation = format!("{method} login");
    let bytes = send(&anonymous, &operation, request)
        .await
        .map_err(|e| login_error(e, method, hint))?;
    let info = serde_json::from_slice::<Answer>(&bytes)
        .ok()
        .and_then(|answer| answer.auth)
        .ok_or_else(|| Error::InvalidResponse {
            operation,
            detail: "the login response holds no token".into(),
        })?;
    token_from(conn, info, timeout)
}

/// The part of a login response that matters.
#[derive(serde::Deserialize)]
struct Answer {
    auth: Option<AuthInfo>,
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
    // vaultrs' own call, not `raw::send`: the leader's fence is checked here as there.
    crate::leader::fence::may_act().await;
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
/// permission problem of the read that follows; an unreachable Vault stays `Unavailable`. The
/// message is Vault's own text, then what the method's `hint` makes of it.
fn login_error(err: Error, method: &str, hint: Hint) -> Error {
    let errors = match err {
        Error::PermissionDenied { errors, .. } if !errors.is_empty() => errors,
        Error::PermissionDenied { .. } => "permission denied".into(),
        Error::Rejected { errors, .. } => errors,
        Error::NotFound { .. } => "no such auth mount or role".into(),
        other => return other,
    };
    let detail = match hint(&errors) {
        Some(hint) => format!("{errors} ({hint})"),
        None => errors,
    };
    Error::LoginFailed {
        method: method.into(),
        detail,
    }
}

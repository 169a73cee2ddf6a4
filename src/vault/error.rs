//! Errors of the Vault client layer, classified so callers can decide whether to retry.
//!
//! Messages never carry response bodies: a Vault response may hold secret data, and vaultrs's
//! own errors can carry the raw body. Only the HTTP status and Vault's error strings (which
//! describe the request, not the data) are kept.

use crate::reasons;

/// Result of a Vault operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed Vault operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Vault could not be reached, timed out, is sealed or answered 5xx.
    #[error("Vault at {address} is unavailable: {detail}")]
    Unavailable { address: String, detail: String },
    /// Vault refused the request (403): the identity's policies do not allow it, or the token is invalid.
    #[error("permission denied by Vault for {operation}")]
    PermissionDenied { operation: String },
    /// Nothing exists at the path (404), or the KV version is deleted or destroyed.
    #[error("{what} not found in Vault")]
    NotFound { what: String },
    /// Vault is rate-limiting this client (429).
    #[error("Vault is rate-limiting requests ({operation})")]
    RateLimited { operation: String },
    /// Vault rejected the request as malformed (4xx other than 403/404/429).
    #[error("Vault rejected {operation} with status {code}: {errors}")]
    Rejected {
        operation: String,
        code: u16,
        errors: String,
    },
    /// Vault answered something this client does not understand.
    #[error("unexpected response from Vault for {operation}: {detail}")]
    InvalidResponse { operation: String, detail: String },
    /// Vault refused to log in with the credential.
    #[error("Vault refused the {method} login: {detail}")]
    LoginFailed { method: String, detail: String },
    /// The connection settings cannot be used (bad address, bad CA bundle).
    #[error("invalid Vault connection settings: {0}")]
    Config(String),
}

impl Error {
    /// Static reason, used for condition reasons, Event reasons and metric labels.
    pub fn reason(&self) -> &'static str {
        self.entry().name
    }

    /// The error's row of the reasons table.
    pub(crate) fn entry(&self) -> reasons::Ready {
        match self {
            Error::Unavailable { .. } => reasons::VAULT_UNAVAILABLE,
            Error::PermissionDenied { .. } => reasons::PERMISSION_DENIED,
            Error::NotFound { .. } => reasons::NOT_FOUND,
            Error::RateLimited { .. } => reasons::RATE_LIMITED,
            Error::Rejected { .. } => reasons::VAULT_REJECTED,
            Error::InvalidResponse { .. } => reasons::INVALID_RESPONSE,
            Error::LoginFailed { .. } => reasons::LOGIN_FAILED,
            Error::Config(_) => reasons::INVALID_VAULT_CONFIG,
        }
    }

    /// The status class label for metrics: `4xx`, `5xx`, or `error` when there was no answer.
    pub fn status_class(&self) -> &'static str {
        match self {
            Error::Unavailable { detail, .. } if detail.starts_with("HTTP") || detail.contains("sealed") => "5xx",
            Error::Unavailable { .. } | Error::InvalidResponse { .. } | Error::Config(_) => "error",
            Error::PermissionDenied { .. }
            | Error::NotFound { .. }
            | Error::RateLimited { .. }
            | Error::Rejected { .. }
            | Error::LoginFailed { .. } => "4xx",
        }
    }

    /// Whether retrying the same request later can succeed without a spec change.
    pub fn is_transient(&self) -> bool {
        self.entry().retry != reasons::Retry::Slowly
    }

    /// Classifies a vaultrs error for `operation` (e.g. `read secret/shop`) against `address`.
    pub(crate) fn from_client(err: vaultrs::error::ClientError, address: &str, operation: &str) -> Self {
        use rustify::errors::ClientError as Rest;
        use vaultrs::error::ClientError as C;
        let operation = operation.to_owned();
        match err {
            C::APIError { code, errors } => Self::from_status(code, errors, address, operation),
            C::RestClientError { source } => match source {
                Rest::ServerResponseError { code, content } => {
                    Self::from_status(code, vault_errors(content.as_deref()), address, operation)
                }
                Rest::RequestError { source, .. } | Rest::ResponseError { source } => Error::Unavailable {
                    address: address.to_owned(),
                    detail: transport_detail(&source),
                },
                Rest::ResponseParseError { .. }
                | Rest::ResponseConversionError { .. }
                | Rest::DataParseError { .. } => Error::InvalidResponse {
                    operation,
                    detail: "the response could not be parsed".into(),
                },
                other => Error::InvalidResponse {
                    operation,
                    detail: static_client_error(&other).into(),
                },
            },
            C::ResponseEmptyError | C::ResponseDataEmptyError => Error::NotFound { what: operation },
            C::JsonParseError { .. } => Error::InvalidResponse {
                operation,
                detail: "the response data has an unexpected shape".into(),
            },
            _ => Error::InvalidResponse {
                operation,
                detail: "the Vault client failed".into(),
            },
        }
    }

    fn from_status(code: u16, errors: Vec<String>, address: &str, operation: String) -> Self {
        let errors = errors.join("; ");
        match code {
            403 => Error::PermissionDenied { operation },
            404 => Error::NotFound { what: operation },
            429 => Error::RateLimited { operation },
            503 if errors.contains("sealed") => Error::Unavailable {
                address: address.to_owned(),
                detail: "Vault is sealed".into(),
            },
            500..=599 => Error::Unavailable {
                address: address.to_owned(),
                detail: format!("HTTP {code}"),
            },
            _ => Error::Rejected {
                operation,
                code,
                errors,
            },
        }
    }
}

/// Vault's own `errors` strings from an error response body (they describe the request, never the
/// data); nothing else of the body is kept.
fn vault_errors(content: Option<&str>) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<String>,
    }
    content
        .and_then(|c| serde_json::from_str::<Body>(c).ok())
        .map(|b| b.errors)
        .unwrap_or_default()
}

/// The transport error chain in words, without anything the server sent.
fn transport_detail(source: &anyhow::Error) -> String {
    let text = format!("{source:#}");
    if text.contains("timed out") || text.contains("operation timed out") {
        "request timed out".into()
    } else if text.contains("onnection refused") {
        "connection refused".into()
    } else if text.contains("certificate") || text.contains("tls") || text.contains("TLS") {
        "TLS handshake failed (check the CA)".into()
    } else {
        "request failed".into()
    }
}

fn static_client_error(err: &rustify::errors::ClientError) -> &'static str {
    use rustify::errors::ClientError as Rest;
    match err {
        Rest::UrlBuildError { .. } | Rest::UrlParseError { .. } | Rest::UrlQueryParseError { .. } => {
            "the request URL could not be built"
        }
        _ => "the request could not be built",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, errors: &[&str]) -> vaultrs::error::ClientError {
        vaultrs::error::ClientError::APIError {
            code,
            errors: errors.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn status_codes_map_to_reasons() {
        let reason = |code, errors: &[&str]| Error::from_client(api(code, errors), "http://v", "read x").reason();
        assert_eq!(reason(403, &["permission denied"]), "PermissionDenied");
        assert_eq!(reason(404, &[]), "NotFound");
        assert_eq!(reason(429, &[]), "RateLimited");
        assert_eq!(reason(503, &["Vault is sealed"]), "VaultUnavailable");
        assert_eq!(reason(500, &["internal error"]), "VaultUnavailable");
        assert_eq!(reason(400, &["bad"]), "VaultRejected");
    }

    #[test]
    fn raw_error_responses_keep_vaults_reason_and_nothing_else() {
        let err = vaultrs::error::ClientError::RestClientError {
            source: rustify::errors::ClientError::ServerResponseError {
                code: 400,
                content: Some(r#"{"errors":["common name not allowed by this role"],"data":{"x":"hunter2"}}"#.into()),
            },
        };
        let classified = Error::from_client(err, "http://v", "pki/issue/web");
        assert_eq!(
            classified.to_string(),
            "Vault rejected pki/issue/web with status 400: common name not allowed by this role"
        );
    }

    #[test]
    fn unparseable_responses_never_echo_the_body() {
        let body = "{\"data\":{\"password\":\"hunter2-known-value\"}}";
        let err = vaultrs::error::ClientError::RestClientError {
            source: rustify::errors::ClientError::ResponseParseError {
                source: anyhow::anyhow!("expected struct"),
                content: Some(body.into()),
            },
        };
        let classified = Error::from_client(err, "http://v", "read secret/x");
        assert!(!classified.to_string().contains("hunter2"), "{classified}");
    }
}

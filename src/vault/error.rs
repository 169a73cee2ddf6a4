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
    #[error("Vault at {address} is unavailable: {cause}")]
    Unavailable { address: String, cause: Unavailable },
    /// Vault refused the request (403): the identity's policies do not allow it, or the token is
    /// invalid. `errors` is Vault's own text, shown when it says more than "permission denied"
    /// (a refused login names its cause there).
    #[error("permission denied by Vault for {operation}{}", more_than_denied(errors))]
    PermissionDenied { operation: String, errors: String },
    /// Nothing exists at the path (404), or the KV version is deleted or destroyed.
    #[error("{what} not found in Vault")]
    NotFound { what: String },
    /// Vault is rate-limiting this client: it answered 429, or (`sent: false`) the operator held
    /// the request back because its turn at that server was too far away.
    #[error("Vault is rate-limiting requests ({operation})")]
    RateLimited { operation: String, sent: bool },
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
            Error::Unavailable {
                cause: Unavailable::Sealed | Unavailable::Status(_),
                ..
            } => "5xx",
            Error::Unavailable { .. } | Error::InvalidResponse { .. } | Error::Config(_) => "error",
            Error::RateLimited { sent: true, .. } => "429",
            Error::RateLimited { sent: false, .. } => "not_sent",
            Error::PermissionDenied { .. }
            | Error::NotFound { .. }
            | Error::Rejected { .. }
            | Error::LoginFailed { .. } => "4xx",
        }
    }

    /// Whether Vault did not answer the request itself: unreachable, sealed, failing (5xx) or
    /// rate-limiting. Any other error is Vault's answer.
    pub fn is_outage(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::RateLimited { .. })
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
                    cause: Unavailable::of_transport(&source),
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
        let errors: Vec<String> = errors.iter().flat_map(|e| unwrap_multierror(e)).collect();
        match code {
            403 => Error::PermissionDenied {
                operation,
                errors: errors.join("; "),
            },
            404 => Error::NotFound { what: operation },
            429 => Error::RateLimited { operation, sent: true },
            // Vault's answer to any request while sealed: 503 with this error (Vault and OpenBao).
            503 if errors.iter().any(|e| e == "Vault is sealed") => Error::Unavailable {
                address: address.to_owned(),
                cause: Unavailable::Sealed,
            },
            500..=599 => Error::Unavailable {
                address: address.to_owned(),
                cause: Unavailable::Status(code),
            },
            _ => Error::Rejected {
                operation,
                code,
                errors: errors.join("; "),
            },
        }
    }
}

/// `: <errors>` unless Vault said no more than "permission denied".
fn more_than_denied(errors: &str) -> String {
    match errors {
        "" | "permission denied" => String::new(),
        more => format!(": {more}"),
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

/// The items of Go's multierror text (`"1 error occurred:\n\t* permission denied\n\n"`, as
/// Vault answers a denied read), or the text itself.
fn unwrap_multierror(text: &str) -> Vec<String> {
    let Some((head, items)) = text.split_once('\n') else {
        return vec![text.to_owned()];
    };
    if !(head.ends_with(" occurred:") && head.contains(" error")) {
        return vec![text.trim().to_owned()];
    }
    items
        .lines()
        .filter_map(|line| line.trim().strip_prefix("* "))
        .map(str::to_owned)
        .collect()
}

/// Why Vault is unavailable, from the typed causes of the failure (never from message text of
/// the transport, which differs between libraries and versions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// No answer within the request timeout.
    Timeout,
    /// Nothing listens at the address.
    Refused,
    /// The TLS handshake failed (an untrusted certificate, or not TLS at all).
    Tls,
    /// Any other transport failure (DNS, reset connection, …).
    Transport,
    /// Vault answered that it is sealed.
    Sealed,
    /// Vault answered with this 5xx status.
    Status(u16),
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::Timeout => f.write_str("request timed out"),
            Unavailable::Refused => f.write_str("connection refused"),
            Unavailable::Tls => f.write_str("TLS handshake failed (check the CA)"),
            Unavailable::Transport => f.write_str("request failed"),
            Unavailable::Sealed => f.write_str("Vault is sealed"),
            Unavailable::Status(code) => write!(f, "HTTP {code}"),
        }
    }
}

impl Unavailable {
    /// Classifies a transport failure by the error types in its chain: reqwest's timeout flag,
    /// and the I/O error kinds of a refused connection or of a TLS record that did not parse.
    fn of_transport(source: &anyhow::Error) -> Self {
        for cause in source.chain() {
            if cause
                .downcast_ref::<reqwest::Error>()
                .is_some_and(reqwest::Error::is_timeout)
            {
                return Unavailable::Timeout;
            }
            // An I/O error's `source()` skips the error it wraps: look inside it too.
            let mut io = cause.downcast_ref::<std::io::Error>();
            while let Some(e) = io {
                match e.kind() {
                    std::io::ErrorKind::TimedOut => return Unavailable::Timeout,
                    std::io::ErrorKind::ConnectionRefused => return Unavailable::Refused,
                    // rustls reports handshake failures as InvalidData.
                    std::io::ErrorKind::InvalidData => return Unavailable::Tls,
                    _ => io = e.get_ref().and_then(|inner| inner.downcast_ref::<std::io::Error>()),
                }
            }
        }
        Unavailable::Transport
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
    fn go_multierror_text_is_reduced_to_its_items() {
        assert_eq!(
            unwrap_multierror("1 error occurred:\n\t* permission denied\n\n"),
            ["permission denied"]
        );
        assert_eq!(unwrap_multierror("2 errors occurred:\n\t* a\n\t* b\n\n"), ["a", "b"]);
        assert_eq!(unwrap_multierror("lease not found"), ["lease not found"]);
        let denied = Error::from_client(
            api(403, &["1 error occurred:\n\t* permission denied\n\n"]),
            "http://v",
            "kv secret/x",
        );
        assert_eq!(denied.to_string(), "permission denied by Vault for kv secret/x");
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

    /// A request with reqwest, as the Vault client makes them, classified as the client does.
    async fn transport_failure(url: &str) -> Unavailable {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_millis(500))
            .build()
            .unwrap();
        let err = client.get(url).send().await.unwrap_err();
        Unavailable::of_transport(&anyhow::Error::from(err))
    }

    #[tokio::test]
    async fn transport_failures_are_classified_by_their_types() {
        // A port nobody listens on.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        assert_eq!(
            transport_failure(&format!("http://127.0.0.1:{port}/")).await,
            Unavailable::Refused
        );

        // A server that accepts and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", silent.local_addr().unwrap());
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = silent.accept().await {
                held.push(conn);
            }
        });
        assert_eq!(transport_failure(&url).await, Unavailable::Timeout);

        // Plain HTTP where TLS is expected.
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}/", plain.local_addr().unwrap());
        let answer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            if let Ok((mut conn, _)) = plain.accept().await {
                let _ = conn
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                    .await;
                let _ = conn.flush().await;
            }
        });
        assert_eq!(transport_failure(&url).await, Unavailable::Tls);
        hold.abort();
        answer.abort();
    }

    #[test]
    fn sealed_is_vaults_own_error_not_any_text_mentioning_it() {
        let sealed = Error::from_client(api(503, &["Vault is sealed"]), "http://v", "read x");
        assert!(matches!(
            sealed,
            Error::Unavailable {
                cause: Unavailable::Sealed,
                ..
            }
        ));
        assert_eq!(sealed.status_class(), "5xx");
        let other = Error::from_client(api(503, &["standby: not sealed"]), "http://v", "read x");
        assert!(matches!(
            other,
            Error::Unavailable {
                cause: Unavailable::Status(503),
                ..
            }
        ));
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

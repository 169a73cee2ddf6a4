//! Every request the operator makes to Vault on behalf of a VaultSecret: built on vaultrs' public
//! rustify machinery and sent through the same client (with its token, namespace header and
//! timeout), naming the VaultSecret in [`OBJECT_HEADER`] for Vault's audit log.

use std::future::Future;

use rustify::client::{Client as _, HTTP_SUCCESS_CODES};
use rustify::endpoint::{Endpoint, MiddleWare};
use rustify::enums::{RequestMethod, RequestType, ResponseType};
use serde_json::Value;
use vaultrs::api::EndpointMiddleware;
use vaultrs::client::{Client, VaultClient};

use super::limit::{self, Limiter};
use super::{Error, Result};

/// The header naming the VaultSecret (`namespace/name`) a request is made for. Vault and OpenBao
/// write it into their audit log once told to (`sys/config/auditing/request-headers`); it is
/// never secret.
pub const OBJECT_HEADER: &str = "X-Vaultsync-Object";

tokio::task_local! {
    /// `namespace/name` of the VaultSecret whose reconcile runs on this task.
    static ON_BEHALF_OF: String;
}

/// Runs `work` with every Vault request it sends naming `object` in [`OBJECT_HEADER`]. A read
/// shared by several VaultSecrets ([`super::coalesce`]) names the one whose task sent it; token
/// renewals in the background name none.
pub async fn on_behalf_of<F: Future>(object: String, work: F) -> F::Output {
    ON_BEHALF_OF.scope(object, work).await
}

/// One request to an arbitrary Vault path.
pub struct Raw {
    pub path: String,
    pub method: RequestMethod,
    pub body: Option<Value>,
}

impl Raw {
    /// A GET of `path` (relative to `/v1/`, with any query after a `?`).
    pub fn get(path: String) -> Raw {
        Raw {
            path,
            method: RequestMethod::GET,
            body: None,
        }
    }
}

/// The client's own middleware (API version prefix, token, namespace), then [`OBJECT_HEADER`].
struct Named<'a> {
    client: &'a EndpointMiddleware,
    object: Option<http::HeaderValue>,
}

impl MiddleWare for Named<'_> {
    fn request<E: Endpoint>(
        &self,
        endpoint: &E,
        req: &mut http::Request<Vec<u8>>,
    ) -> std::result::Result<(), rustify::errors::ClientError> {
        self.client.request(endpoint, req)?;
        if let Some(object) = &self.object {
            req.headers_mut().insert(OBJECT_HEADER, object.clone());
        }
        Ok(())
    }

    fn response<E: Endpoint>(
        &self,
        endpoint: &E,
        resp: &mut http::Response<Vec<u8>>,
    ) -> std::result::Result<(), rustify::errors::ClientError> {
        self.client.response(endpoint, resp)
    }
}

impl Endpoint for Raw {
    type Response = Value;
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        self.path
            .split_once('?')
            .map_or(&*self.path, |(path, _)| path)
            .to_owned()
    }

    fn query(&self) -> std::result::Result<Option<String>, rustify::errors::ClientError> {
        Ok(self.path.split_once('?').map(|(_, query)| query.to_owned()))
    }

    fn method(&self) -> RequestMethod {
        self.method.clone()
    }

    fn body(&self) -> std::result::Result<Option<Vec<u8>>, rustify::errors::ClientError> {
        Ok(self.body.as_ref().map(|b| b.to_string().into_bytes()))
    }
}

/// Whether the server answers at all: `GET sys/health` (unauthenticated, read-only), whatever
/// its status. Sent instead of a request that could change something while the server is
/// [suspect](Limiter::is_suspect).
async fn answers(client: &VaultClient, limiter: &Limiter) -> bool {
    let url = format!("{}/v1/sys/health", client.http().base().trim_end_matches('/'));
    let Ok(request) = http::Request::get(url).body(Vec::new()) else {
        return false;
    };
    let answered = client.http().send(request).await.is_ok();
    if answered {
        limiter.responsive();
    }
    answered
}

/// Sends `request` when the server's [`Limiter`] gives it a turn; `operation` names it in errors.
pub async fn send(client: &VaultClient, operation: &str, request: Raw) -> Result<Vec<u8>> {
    // A replica that no longer leads sends nothing (and is about to exit).
    crate::leader::fence::may_act().await;
    let address = client.settings.address.as_str().to_owned();
    let limiter = Limiter::of(&address, client.settings.namespace.as_deref());
    if !limiter.wait_turn().await {
        return Err(Error::RateLimited {
            operation: format!(
                "{operation}; not sent: Vault at {address} is rate-limiting and the next turn is more than {}s away",
                limit::MAX_WAIT.as_secs()
            ),
            sent: false,
        });
    }
    if limiter.is_suspect() && !answers(client, &limiter).await {
        return Err(Error::Unavailable {
            address,
            cause: super::error::Unavailable::Timeout,
        });
    }
    // Kubernetes names are valid header values; anything else is left out rather than refused.
    let object = ON_BEHALF_OF
        .try_with(|object| http::HeaderValue::from_str(object).ok())
        .ok()
        .flatten();
    let middleware = Named {
        client: client.middle(),
        object,
    };
    let endpoint = request.with_middleware(&middleware);
    // Sent with rustify's `send`, not `exec`: `exec` drops the headers of a refused request, and
    // a 429's `Retry-After` is one of them.
    let sent = match endpoint.request(client.http().base()) {
        Ok(req) => client.http().send(req).await,
        Err(e) => Err(e),
    };
    let failed = |source| {
        Error::from_client(
            vaultrs::error::ClientError::RestClientError { source },
            &address,
            operation,
        )
    };
    let now = tokio::time::Instant::now();
    let response = match sent {
        Ok(response) => response,
        Err(e) => {
            let error = failed(e);
            let timed_out = matches!(
                error,
                Error::Unavailable {
                    cause: super::error::Unavailable::Timeout,
                    ..
                }
            );
            limiter.unanswered(timed_out);
            return Err(error);
        }
    };
    let code = response.status().as_u16();
    let retry_after = limit::retry_after(response.headers().get(http::header::RETRY_AFTER));
    limiter.answered(now, code == 429, retry_after);
    if HTTP_SUCCESS_CODES.contains(&code) {
        Ok(response.into_body())
    } else {
        let content = String::from_utf8(response.into_body()).ok();
        Err(failed(rustify::errors::ClientError::ServerResponseError {
            code,
            content,
        }))
    }
}

//! Requests vaultrs has no call for, built on its public rustify machinery and sent through the
//! same client (with its token, namespace header and timeout).

use rustify::endpoint::Endpoint;
use rustify::enums::{RequestMethod, RequestType, ResponseType};
use serde_json::Value;
use vaultrs::client::{Client, VaultClient};

use super::{Error, Result};

/// One request to an arbitrary Vault path.
pub struct Raw {
    pub path: String,
    pub method: RequestMethod,
    pub body: Option<Value>,
}

impl Endpoint for Raw {
    type Response = Value;
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        self.path.clone()
    }

    fn method(&self) -> RequestMethod {
        self.method.clone()
    }

    fn body(&self) -> std::result::Result<Option<Vec<u8>>, rustify::errors::ClientError> {
        Ok(self.body.as_ref().map(|b| b.to_string().into_bytes()))
    }
}

/// Sends `request`; `operation` names it in errors.
pub async fn send(client: &VaultClient, operation: &str, request: Raw) -> Result<Vec<u8>> {
    let address = client.settings.address.as_str().to_owned();
    let result = request.with_middleware(client.middle()).exec(client.http()).await;
    match result {
        Ok(response) => Ok(response.raw()),
        Err(e) => Err(Error::from_client(
            vaultrs::error::ClientError::RestClientError { source: e },
            &address,
            operation,
        )),
    }
}

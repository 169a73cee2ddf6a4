//! Building vaultrs clients with every setting explicit.
//!
//! vaultrs's settings builder reads `VAULT_*` from the process environment and panics on a bad
//! address; the operator must do neither, so the client is assembled field by field here.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use parking_lot::Mutex;

use url::Url;
use vaultrs::api::EndpointMiddleware;
use vaultrs::client::{VaultClient, VaultClientSettings};

use super::{Connection, Error, Result};

/// Parses and checks a Vault address: `http` or `https`, a host, no credentials, query or
/// fragment. Errors never repeat the address: it may hold a password.
pub fn parse_address(address: &str) -> Result<Url> {
    let shape = "must be http(s)://host[:port][/path], without user, password, query or fragment";
    let url = Url::parse(address).map_err(|e| Error::Config(format!("the address is not a URL ({e}); it {shape}")))?;
    let scheme_ok = matches!(url.scheme(), "http" | "https");
    let credentials = !url.username().is_empty() || url.password().is_some();
    if !scheme_ok || credentials || url.host().is_none() || url.query().is_some() || url.fragment().is_some() {
        return Err(Error::Config(format!("the address {shape}")));
    }
    Ok(url)
}

/// Most HTTP clients kept: distinct (address, CA bundle, timeout) triples are few in any real
/// cluster, but CA bundles come from VaultSecrets; past this many the kept ones are dropped.
const MAX_HTTP_CLIENTS: usize = 256;

type HttpKey = (Url, Option<Arc<[u8]>>, Duration);

/// The HTTP clients in use, by what shapes them.
static HTTP_CLIENTS: LazyLock<Mutex<HashMap<HttpKey, reqwest::Client>>> = LazyLock::new(Mutex::default);

/// The HTTP client for `conn`: one per (address, CA bundle, timeout), shared by every token used
/// there, so each server has one connection pool and one TLS configuration. A token is only a
/// header of each request ([`EndpointMiddleware`]). With a client per token, 1,000 identities held
/// 1,000 pools and each login opened a connection of its own.
fn http_client(conn: &Connection, timeout: Duration) -> Result<reqwest::Client> {
    let key = (conn.address.clone(), conn.ca_pem.clone(), timeout);
    if let Some(client) = HTTP_CLIENTS.lock().get(&key) {
        return Ok(client.clone());
    }
    let client = new_http_client(conn, timeout)?;
    let mut clients = HTTP_CLIENTS.lock();
    if clients.len() >= MAX_HTTP_CLIENTS {
        clients.clear();
    }
    Ok(clients.entry(key).or_insert(client).clone())
}

fn new_http_client(conn: &Connection, timeout: Duration) -> Result<reqwest::Client> {
    let mut http = reqwest::ClientBuilder::new().timeout(timeout).connect_timeout(timeout);
    if conn.address.scheme() == "http" {
        // Plain HTTP needs no roots; loading the platform's would only slow start-up.
        http = http.tls_certs_only(Vec::new());
    } else if let Some(pem) = &conn.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|_| Error::Config("the CA bundle is not valid PEM".into()))?;
        if certs.is_empty() {
            return Err(Error::Config("the CA bundle holds no certificate".into()));
        }
        http = http.tls_certs_only(certs);
    }
    http.build()
        .map_err(|_| Error::Config("the HTTP client could not be built".into()))
}

/// A vaultrs client for `conn`, authenticated with `token`.
pub fn build(conn: &Connection, token: &str, timeout: Duration) -> Result<VaultClient> {
    let http = http_client(conn, timeout)?;
    let settings = VaultClientSettings {
        address: conn.address.clone(),
        ca_certs: Vec::new(),
        identity: None,
        timeout: Some(timeout),
        token: token.to_owned(),
        verify: true,
        version: 1,
        wrapping: false,
        namespace: conn.namespace.clone(),
        proxy: None,
    };
    let middle = EndpointMiddleware {
        token: token.to_owned(),
        version: "v1".into(),
        wrap: None,
        namespace: conn.namespace.clone(),
    };
    let base = conn.address.as_str().trim_end_matches('/');
    Ok(VaultClient {
        http: rustify::clients::reqwest::Client::new(base, http),
        middle,
        settings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_before_use() {
        assert!(parse_address("https://vault.example:8200").is_ok());
        assert!(parse_address("http://127.0.0.1:8200/").is_ok());
        for bad in [
            "vault:8200",
            "ftp://vault",
            "https://",
            "https://v?x=1",
            "not a url",
            "http://u@v",
        ] {
            assert!(parse_address(bad).is_err(), "{bad} should be refused");
        }
        let err = parse_address("http://user:hunter2@vault.example").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn a_ca_bundle_without_certificates_is_refused() {
        let conn = Connection {
            address: parse_address("https://vault.example:8200").unwrap(),
            namespace: None,
            ca_pem: Some(b"not pem".to_vec().into()),
        };
        assert!(matches!(
            build(&conn, "t", Duration::from_secs(1)),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn tokens_of_one_server_share_its_http_client() {
        let conn = |address: &str| Connection {
            address: parse_address(address).unwrap(),
            namespace: None,
            ca_pem: None,
        };
        let kept = |address: &str| {
            let address = parse_address(address).unwrap();
            HTTP_CLIENTS.lock().keys().filter(|k| k.0 == address).count()
        };
        let shared = conn("http://shared.client.test:8200");
        for token in ["one", "two", "three"] {
            let client = build(&shared, token, Duration::from_secs(7)).unwrap();
            assert_eq!(client.middle.token, token, "each client sends its own token");
        }
        assert_eq!(
            kept("http://shared.client.test:8200"),
            1,
            "one HTTP client for three tokens"
        );
        build(&shared, "four", Duration::from_secs(8)).unwrap();
        assert_eq!(
            kept("http://shared.client.test:8200"),
            2,
            "another timeout is another client"
        );
    }
}

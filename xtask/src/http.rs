//! A minimal blocking HTTP/1.0 client for plain-HTTP loopback endpoints (etcd health, OpenBao API).
//!
//! Only what the environment needs: one request per connection, body read until the server closes.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

/// A response: status code and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    /// Parses the body as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(&self.body).with_context(|| format!("invalid JSON body: {}", self.body))
    }
}

/// How long one request may wait for the server. Loopback servers answer in milliseconds, but a
/// fresh OpenBao's `sys/init` waits for its Raft storage to elect itself, which took more than
/// 10 s on a loaded 2-core CI machine.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Sends one request to `addr` and reads the whole response. Every error names the request; a
/// timeout says so instead of the socket's "Resource temporarily unavailable".
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<Response> {
    let what = || format!("{method} http://{addr}{path}");
    let raw = exchange(addr, method, path, token, body).map_err(|err| {
        let err = match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                anyhow!("no answer within {} s", TIMEOUT.as_secs())
            }
            _ => anyhow::Error::from(err),
        };
        err.context(what())
    })?;
    parse_response(&raw).with_context(what)
}

fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;

    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("X-Vault-Token: {token}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;

    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    Ok(raw)
}

fn parse_response(raw: &[u8]) -> Result<Response> {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("truncated HTTP response");
    };
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("malformed status line {status_line:?}"))?;
    Ok(Response {
        status,
        body: body.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_split_into_status_and_body() {
        let raw = b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n\r\n{\"sealed\":true}";
        let response = parse_response(raw).unwrap();
        assert_eq!(response.status, 503);
        assert_eq!(response.json().unwrap()["sealed"], true);
    }

    #[test]
    fn an_error_names_the_request() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = request(addr, "PUT", "/v1/sys/init", None, None).unwrap_err();
        assert!(
            format!("{err:#}").starts_with(&format!("PUT http://{addr}/v1/sys/init: ")),
            "{err:#}"
        );
    }

    #[test]
    fn a_response_without_a_header_end_is_an_error() {
        assert!(parse_response(b"HTTP/1.0 200 OK\r\n").is_err());
    }
}

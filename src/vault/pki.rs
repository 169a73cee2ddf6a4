//! Issuing X.509 certificates from the PKI secrets engine (`<mount>/issue/<role>`) and shaping
//! them into `kubernetes.io/tls` Secret data.
//!
//! What goes where:
//! - `tls.crt`: the leaf certificate, then the intermediates Vault returned in `ca_chain`, each PEM
//!   ending in a newline. A self-signed root is left out: a TLS peer must already trust the root,
//!   sending it only costs bytes on every handshake, and a client must never take a root from the
//!   peer it is verifying (RFC 8446 §4.4.2 allows omitting it; cert-manager does the same).
//! - `tls.key`: the private key as Vault returned it.
//! - `ca.crt`: the trust anchor for clients: the self-signed root of the chain when Vault returned
//!   it, otherwise the top-most CA it returned (the last of `ca_chain`, or `issuing_ca`).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use vaultrs::client::VaultClient;

use super::{Error, Result, lease};

/// What to ask for: the subject names and the lifetime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub common_name: String,
    /// DNS names (and email addresses) besides the common name.
    pub alt_names: Vec<String>,
    /// IP address SANs.
    pub ip_sans: Vec<String>,
    /// Lifetime such as `30s` or `24h`; the role's default when absent.
    pub ttl: Option<String>,
}

impl Request {
    /// The request body of `issue/<role>`: Vault takes the name lists comma-separated.
    fn params(&self) -> BTreeMap<String, Value> {
        let mut params = BTreeMap::from([("common_name".to_string(), Value::from(self.common_name.as_str()))]);
        if !self.alt_names.is_empty() {
            params.insert("alt_names".into(), self.alt_names.join(",").into());
        }
        if !self.ip_sans.is_empty() {
            params.insert("ip_sans".into(), self.ip_sans.join(",").into());
        }
        if let Some(ttl) = &self.ttl {
            params.insert("ttl".into(), ttl.as_str().into());
        }
        params
    }
}

/// A certificate Vault issued, with its private key. Must not outlive the sync that needs it.
#[derive(Clone)]
pub struct Certificate {
    /// The leaf certificate (PEM).
    pub certificate: String,
    /// Its private key (PEM). Never printed.
    pub private_key: String,
    /// The CA certificates from the issuer up to the root, as far as Vault knows them (PEM each).
    pub ca_chain: Vec<String>,
    /// The issuing CA's certificate (PEM).
    pub issuing_ca: String,
    /// Serial number, colon-separated hex.
    pub serial_number: String,
    /// When the certificate expires, in Unix seconds.
    pub expiration: i64,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("serial_number", &self.serial_number)
            .field("expiration", &self.expiration)
            .field("ca_chain", &self.ca_chain.len())
            .finish_non_exhaustive()
    }
}

/// Issues a certificate with `role` of the PKI engine at `mount` (`POST <mount>/issue/<role>`).
pub async fn issue(client: &VaultClient, mount: &str, role: &str, request: &Request) -> Result<Certificate> {
    let path = format!("issue/{role}");
    let issued = lease::issue(client, "POST", mount, &path, &request.params()).await?;
    from_data(issued.data, &format!("issue {mount}/{path}"))
}

/// Picks the certificate fields out of an `issue` response's `data`.
fn from_data(mut data: BTreeMap<String, Value>, operation: &str) -> Result<Certificate> {
    let invalid = |field: &str| Error::InvalidResponse {
        operation: operation.to_owned(),
        detail: format!("the certificate response lacks {field}"),
    };
    let mut text = |field: &str| match data.remove(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(invalid(field)),
    };
    let certificate = text("certificate")?;
    let private_key = text("private_key")?;
    let issuing_ca = text("issuing_ca")?;
    let serial_number = text("serial_number")?;
    let ca_chain = match data.remove("ca_chain") {
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s),
                _ => Err(invalid("a PEM string in ca_chain")),
            })
            .collect::<Result<_>>()?,
        None | Some(Value::Null) => Vec::new(),
        Some(_) => return Err(invalid("a ca_chain list")),
    };
    let expiration = data
        .get("expiration")
        .and_then(Value::as_i64)
        .ok_or_else(|| invalid("expiration"))?;
    Ok(Certificate {
        certificate,
        private_key,
        ca_chain,
        issuing_ca,
        serial_number,
        expiration,
    })
}

/// `tls.crt`, `tls.key` and `ca.crt` for a `kubernetes.io/tls` Secret (see the module docs).
pub fn tls_data(cert: &Certificate) -> BTreeMap<String, Vec<u8>> {
    let leaf = cert.certificate.trim();
    let chain: Vec<&str> = if cert.ca_chain.is_empty() {
        vec![cert.issuing_ca.trim()]
    } else {
        cert.ca_chain.iter().map(|c| c.trim()).collect()
    };
    let chain: Vec<&str> = chain.into_iter().filter(|c| !c.is_empty() && *c != leaf).collect();
    let (roots, intermediates): (Vec<&str>, Vec<&str>) = chain.iter().partition(|c| is_self_signed(c));
    let anchor = roots.last().or(chain.last()).copied().unwrap_or_default();

    let mut tls_crt = String::new();
    for pem in std::iter::once(leaf).chain(intermediates) {
        tls_crt.push_str(pem);
        tls_crt.push('\n');
    }
    let ca_crt = if anchor.is_empty() {
        String::new()
    } else {
        format!("{anchor}\n")
    };
    BTreeMap::from([
        ("tls.crt".to_string(), tls_crt.into_bytes()),
        (
            "tls.key".to_string(),
            format!("{}\n", cert.private_key.trim()).into_bytes(),
        ),
        ("ca.crt".to_string(), ca_crt.into_bytes()),
    ])
}

/// Whether the PEM certificate's issuer equals its subject. Unreadable input counts as not
/// self-signed, so it stays in `tls.crt` rather than silently becoming a trust anchor.
fn is_self_signed(pem: &str) -> bool {
    der_of(pem).is_some_and(|der| issuer_and_subject(&der).is_some_and(|(issuer, subject)| issuer == subject))
}

/// The DER bytes of the first PEM block.
fn der_of(pem: &str) -> Option<Vec<u8>> {
    let body = pem
        .split("-----BEGIN CERTIFICATE-----")
        .nth(1)?
        .split("-----END CERTIFICATE-----")
        .next()?;
    let base64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(base64).ok()
}

/// The raw issuer and subject `Name`s of a DER certificate:
/// `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber,
/// signature, issuer, validity, subject, … } … }`.
fn issuer_and_subject(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (_, cert, _) = tlv(der)?;
    let (_, tbs, _) = tlv(cert)?;
    let mut rest = tbs;
    let mut fields = Vec::with_capacity(6);
    while fields.len() < 6 && !rest.is_empty() {
        let (tag, _, after) = tlv(rest)?;
        let whole = &rest[..rest.len() - after.len()];
        if !(fields.is_empty() && tag == 0xa0) {
            fields.push(whole);
        }
        rest = after;
    }
    // serialNumber, signature, issuer, validity, subject
    Some((fields.get(2)?, fields.get(4)?))
}

/// One DER TLV: (tag, contents, the bytes after it).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests;

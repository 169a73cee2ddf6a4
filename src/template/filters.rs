//! vaultsync's own filters and functions. Their errors never quote the value they were given.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use minijinja::{Environment, Error, ErrorKind, Value};

/// Adds `b64encode`, `b64decode`, `toyaml`, `pemblocks` and `dockerconfigjson` to `env`.
pub fn register(env: &mut Environment<'static>) {
    env.add_filter("b64encode", b64encode);
    env.add_filter("b64decode", b64decode);
    env.add_filter("toyaml", toyaml);
    env.add_filter("pemblocks", pemblocks);
    env.add_filter("dockerconfigjson", dockerconfigjson);
    env.add_function("dockerconfigjson", dockerconfigjson);
}

const B64ENCODE_TYPE: &str = "b64encode takes a string or binary data";
const B64DECODE_INVALID: &str = "b64decode: the value is not valid base64";
const B64DECODE_BINARY: &str = "b64decode: the decoded value is not UTF-8 text";
const TOYAML_INVALID: &str = "toyaml: the value cannot be written as YAML";

/// Error details written by these filters: they name no value, so messages may show them.
pub const SAFE_DETAILS: [&str; 4] = [B64ENCODE_TYPE, B64DECODE_INVALID, B64DECODE_BINARY, TOYAML_INVALID];

fn invalid(message: &'static str) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

/// Standard base64 of a string's UTF-8 bytes, or of binary data.
fn b64encode(value: Value) -> Result<String, Error> {
    if let Some(text) = value.as_str() {
        return Ok(STANDARD.encode(text));
    }
    match value.as_bytes() {
        Some(bytes) => Ok(STANDARD.encode(bytes)),
        None => Err(invalid(B64ENCODE_TYPE)),
    }
}

/// Decodes standard base64 into text (binary data belongs in a source's `decodeBase64`).
fn b64decode(value: &str) -> Result<String, Error> {
    let bytes = STANDARD.decode(value.trim()).map_err(|_| invalid(B64DECODE_INVALID))?;
    String::from_utf8(bytes).map_err(|_| invalid(B64DECODE_BINARY))
}

/// The value as a YAML document.
fn toyaml(value: Value) -> Result<String, Error> {
    serde_yaml::to_string(&value).map_err(|_| invalid(TOYAML_INVALID))
}

/// The PEM blocks of a bundle, each with its BEGIN/END lines and a final newline, optionally only
/// those of one `label` (`CERTIFICATE`, `PRIVATE KEY`, …): `(chain | pemblocks('CERTIFICATE'))[0]`
/// is the leaf certificate. Text outside blocks is dropped.
fn pemblocks(value: &str, label: Option<&str>) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    for line in value.lines().map(str::trim) {
        if let Some(begin) = line.strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")) {
            current = Some((begin.to_owned(), vec![line]));
        } else if let Some((block_label, mut lines)) = current.take() {
            lines.push(line);
            if line.strip_prefix("-----END ").and_then(|l| l.strip_suffix("-----")) == Some(block_label.as_str()) {
                if label.is_none_or(|l| l == block_label) {
                    blocks.push(lines.join("\n") + "\n");
                }
            } else {
                current = Some((block_label, lines));
            }
        }
    }
    blocks
}

/// A `.dockerconfigjson` document with one registry's credentials.
fn dockerconfigjson(registry: &str, username: &str, password: &str) -> String {
    let auth = STANDARD.encode(format!("{username}:{password}"));
    let doc = serde_json::json!({
        "auths": {registry: {"username": username, "password": password, "auth": auth}}
    });
    doc.to_string()
}

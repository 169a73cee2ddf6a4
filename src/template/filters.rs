//! vaultsync's own filters and functions. Their errors never quote the value they were given.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use minijinja::{Environment, Error, ErrorKind, Value};

/// Adds `b64encode`, `b64decode`, `toyaml` and `dockerconfigjson` to `env`.
pub fn register(env: &mut Environment<'static>) {
    env.add_filter("b64encode", b64encode);
    env.add_filter("b64decode", b64decode);
    env.add_filter("toyaml", toyaml);
    env.add_filter("dockerconfigjson", dockerconfigjson);
    env.add_function("dockerconfigjson", dockerconfigjson);
}

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
        None => Err(invalid("b64encode takes a string or binary data")),
    }
}

/// Decodes standard base64 into text (binary data belongs in a source's `decodeBase64`).
fn b64decode(value: &str) -> Result<String, Error> {
    let bytes = STANDARD
        .decode(value.trim())
        .map_err(|_| invalid("b64decode: the value is not valid base64"))?;
    String::from_utf8(bytes).map_err(|_| invalid("b64decode: the decoded value is not UTF-8 text"))
}

/// The value as a YAML document.
fn toyaml(value: Value) -> Result<String, Error> {
    serde_yaml::to_string(&value).map_err(|_| invalid("toyaml: the value cannot be written as YAML"))
}

/// A `.dockerconfigjson` document with one registry's credentials.
fn dockerconfigjson(registry: &str, username: &str, password: &str) -> Result<String, Error> {
    let auth = STANDARD.encode(format!("{username}:{password}"));
    let doc = serde_json::json!({
        "auths": {registry: {"username": username, "password": password, "auth": auth}}
    });
    Ok(doc.to_string())
}

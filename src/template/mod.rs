//! Sandboxed rendering of `spec.destination.templates` with minijinja, outside the operator's
//! process.
//!
//! A template sees only the context built for its own VaultSecret ([`Context`]): no file loader,
//! no environment variables, no network, no other Secrets. Rendering is bounded in instructions
//! ([`FUEL`]) and in output size ([`MAX_OUTPUT`]), so no template can hang the renderer or build
//! a Secret larger than the API server accepts.
//!
//! Fuel counts instructions, not bytes, and minijinja bounds no intermediate string: a template
//! that doubles a string with `~` a few dozen times would exhaust any process's memory. So
//! [`render`] runs each VaultSecret's templates in a child process, `vaultsync render-templates`,
//! with an address-space limit ([`MEMORY_LIMIT`]), a CPU limit ([`CPU_LIMIT_SECONDS`]) and a
//! wall-clock limit ([`TIME_LIMIT`]); a breach is an [`Error`] like any failing template, and the
//! operator's own memory never sees the intermediate values.

mod child;
mod filters;
mod isolate;
mod limits;
mod protocol;
mod sandbox;

use std::collections::BTreeMap;

pub use child::serve_stdio;
pub use isolate::{TIME_LIMIT, set_program};
pub use limits::{CPU_LIMIT_SECONDS, MEMORY_LIMIT};

/// Largest rendered value, and largest Secret: the API server refuses Secrets above 1 MiB.
pub const MAX_OUTPUT: usize = 1024 * 1024;

/// Instruction budget of one template: ample for loops over a few thousand items, and a runaway
/// loop stops within milliseconds.
pub const FUEL: u64 = 200_000;

/// Why a template could not be rendered. The message names the template key (when one is to
/// blame) and the position, never a value of the context.
#[derive(Debug)]
pub struct Error {
    /// The Secret key of the template; empty when the failure concerns no template in particular.
    pub key: String,
    /// What went wrong, and where in the template's text.
    pub message: String,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.key.is_empty() {
            true => write!(f, "templates: {}", self.message),
            false => write!(f, "template {}: {}", self.key, self.message),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    fn new(key: &str, message: impl Into<String>) -> Error {
        Error {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// One source as templates see it.
pub struct SourceContext {
    /// The source's name, or its index as a string.
    pub name: String,
    /// Index in `spec.sources`.
    pub index: usize,
    /// Kind of the source (`kv`).
    pub kind: &'static str,
    /// KV v2 version read, when there is one.
    pub version: Option<u64>,
    /// The source's data after key selection and mapping.
    pub data: BTreeMap<String, Vec<u8>>,
}

/// Everything a template may see.
pub struct Context {
    /// The merged data of every source.
    pub data: BTreeMap<String, Vec<u8>>,
    /// Each source, in spec order.
    pub sources: Vec<SourceContext>,
    /// The VaultSecret's name.
    pub name: String,
    /// The VaultSecret's namespace.
    pub namespace: String,
    /// The VaultSecret's labels.
    pub labels: BTreeMap<String, String>,
    /// The VaultSecret's annotations.
    pub annotations: BTreeMap<String, String>,
}

/// Renders every template of `templates` (Secret key → template text) against `context`, in a
/// child process under the limits above.
pub async fn render(
    templates: &BTreeMap<String, String>,
    context: &Context,
) -> Result<BTreeMap<String, Vec<u8>>, Error> {
    if templates.is_empty() {
        return Ok(BTreeMap::new());
    }
    let request = protocol::Request::new(templates, context);
    // The library's own unit tests have no `vaultsync` binary to spawn; integration tests do.
    if cfg!(test) {
        return sandbox::render_all(&request.templates, &request.context, |_| {});
    }
    isolate::render(&request).await
}

#[cfg(test)]
mod tests;

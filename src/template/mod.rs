//! Sandboxed rendering of `spec.destination.templates` with minijinja.
//!
//! A template sees only the context built for its own VaultSecret ([`Context`]): no file loader,
//! no environment variables, no network, no other Secrets. Rendering is bounded in instructions
//! ([`FUEL`]) and in output size ([`MAX_OUTPUT`]), so no template can hang the operator or build
//! a Secret larger than the API server accepts.

mod filters;

use std::collections::BTreeMap;
use std::io;

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, Value};

/// Largest rendered value, and largest Secret: the API server refuses Secrets above 1 MiB.
pub const MAX_OUTPUT: usize = 1024 * 1024;

/// Instruction budget of one template: ample for loops over a few thousand items, and a runaway
/// loop stops within milliseconds.
// Known gap: fuel counts instructions, not bytes, and minijinja bounds no intermediate string
// (only `*` repetition, at 100 MB). A template that doubles a string with `~` a few dozen times
// exhausts memory before the output bound is reached. Closing it needs a size limit in minijinja
// or rendering outside the operator's process.
pub const FUEL: u64 = 200_000;

/// Why a template could not be rendered. The message names the template key and the position,
/// never a value of the context.
#[derive(Debug, thiserror::Error)]
#[error("template {key}: {message}")]
pub struct Error {
    /// The Secret key of the template.
    pub key: String,
    /// What went wrong, and where in the template's text.
    pub message: String,
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

/// Names at the top level of the context that a merged key cannot shadow.
const RESERVED: [&str; 3] = ["data", "sources", "metadata"];

impl Context {
    /// The context as minijinja sees it: `data`, `sources` (by name and by index), `metadata`, and
    /// every merged key at the top level unless it has one of those names.
    fn to_value(&self) -> Value {
        let data = data_value(&self.data);
        let mut sources = BTreeMap::new();
        for source in &self.sources {
            let mut entry = BTreeMap::new();
            entry.insert("name".to_owned(), Value::from(source.name.clone()));
            entry.insert("kind".to_owned(), Value::from(source.kind));
            entry.insert(
                "version".to_owned(),
                source.version.map(Value::from).unwrap_or(Value::from(())),
            );
            entry.insert("data".to_owned(), data_value(&source.data));
            let entry = Value::from(entry);
            sources.insert(source.index.to_string(), entry.clone());
            sources.insert(source.name.clone(), entry);
        }
        let mut metadata = BTreeMap::new();
        metadata.insert("name".to_owned(), Value::from(self.name.clone()));
        metadata.insert("namespace".to_owned(), Value::from(self.namespace.clone()));
        metadata.insert("labels".to_owned(), Value::from_serialize(&self.labels));
        metadata.insert("annotations".to_owned(), Value::from_serialize(&self.annotations));

        let mut root: BTreeMap<String, Value> = self
            .data
            .iter()
            .filter(|(k, _)| !RESERVED.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), bytes_value(v)))
            .collect();
        root.insert("data".to_owned(), data);
        root.insert("sources".to_owned(), Value::from(sources));
        root.insert("metadata".to_owned(), Value::from(metadata));
        Value::from(root)
    }
}

fn data_value(data: &BTreeMap<String, Vec<u8>>) -> Value {
    Value::from(
        data.iter()
            .map(|(k, v)| (k.clone(), bytes_value(v)))
            .collect::<BTreeMap<_, _>>(),
    )
}

/// Text stays text; binary data (from `decodeBase64`) is bytes, usable with `b64encode`.
fn bytes_value(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::from(text),
        Err(_) => Value::from_bytes(bytes.to_vec()),
    }
}

/// The sandbox: builtin filters and tests only, plus vaultsync's own; strict undefined values;
/// no loader (so `include`, `import`, `extends` find nothing); no auto-escaping; bounded fuel.
fn sandbox() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_fuel(Some(FUEL));
    // Debug info gives errors the span of template text they occurred in; the `debug()` global,
    // which would print the whole context, goes.
    env.set_debug(true);
    env.remove_global("debug");
    filters::register(&mut env);
    env
}

/// Renders every template of `templates` (Secret key → template text) against `context`.
pub fn render_all(templates: &BTreeMap<String, String>, context: &Context) -> Result<BTreeMap<String, Vec<u8>>, Error> {
    if templates.is_empty() {
        return Ok(BTreeMap::new());
    }
    let env = sandbox();
    let ctx = context.to_value();
    templates
        .iter()
        .map(|(key, text)| Ok((key.clone(), render_one(&env, key, text, &ctx)?)))
        .collect()
}

fn render_one(env: &Environment<'static>, key: &str, text: &str, ctx: &Value) -> Result<Vec<u8>, Error> {
    let fail = |e: minijinja::Error| Error {
        key: key.to_owned(),
        message: describe(&e, text),
    };
    let template = env.template_from_str(text).map_err(fail)?;
    let mut out = Bounded::default();
    match template.render_captured_to(ctx, &mut out) {
        Ok(_) => Ok(out.buf),
        Err(_) if out.overflowed => Err(Error {
            key: key.to_owned(),
            message: format!(
                "the rendered value exceeds {} bytes (the limit of a Secret)",
                MAX_OUTPUT
            ),
        }),
        Err(e) => Err(fail(e)),
    }
}

/// A message for `err` that cannot echo a value of the context: a syntax error's detail comes
/// from the template's own text; for any other error only the kind, the line and the span of
/// template text are given (minijinja's details may quote values).
fn describe(err: &minijinja::Error, text: &str) -> String {
    let mut message = match err.kind() {
        ErrorKind::SyntaxError | ErrorKind::UnknownFilter | ErrorKind::UnknownTest | ErrorKind::UnknownFunction => {
            match err.detail() {
                Some(detail) => format!("{}: {detail}", err.kind()),
                None => err.kind().to_string(),
            }
        }
        ErrorKind::OutOfFuel => "rendering took too many steps (a runaway loop?)".to_owned(),
        ErrorKind::InvalidOperation if err.detail().is_some_and(|d| filters::SAFE_DETAILS.contains(&d)) => {
            err.detail().unwrap_or_default().to_owned()
        }
        kind => kind.to_string(),
    };
    if let Some(line) = err.line() {
        message.push_str(&format!(" at line {line}"));
    }
    if let Some(span) = err.range().and_then(|r| text.get(r)) {
        message.push_str(&format!(" in `{}`", span.chars().take(80).collect::<String>()));
    }
    message
}

/// A writer that refuses to grow beyond [`MAX_OUTPUT`].
#[derive(Default)]
struct Bounded {
    buf: Vec<u8>,
    overflowed: bool,
}

impl io::Write for Bounded {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.buf.len() + bytes.len() > MAX_OUTPUT {
            self.overflowed = true;
            return Err(io::Error::other("output limit"));
        }
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;

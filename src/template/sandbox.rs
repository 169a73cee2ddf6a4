//! The minijinja sandbox itself, as it runs inside `vaultsync render-templates`: no loader, no
//! environment, bounded fuel and output.

use std::collections::BTreeMap;
use std::io;

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, Value};

use super::protocol::WireContext;
use super::{Error, FUEL, MAX_OUTPUT, filters};

/// Names at the top level of the context that a merged key cannot shadow.
const RESERVED: [&str; 3] = ["data", "sources", "metadata"];

impl WireContext {
    /// The context as minijinja sees it: `data`, `sources` (by name and by index), `metadata`, and
    /// every merged key at the top level unless it has one of those names.
    fn to_value(&self) -> Value {
        let data = data_value(&self.data);
        let mut sources = BTreeMap::new();
        for source in &self.sources {
            let mut entry = BTreeMap::new();
            entry.insert("name".to_owned(), Value::from(source.name.clone()));
            entry.insert("kind".to_owned(), Value::from(source.kind.clone()));
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

/// Renders every template of `templates` (Secret key → template text) against `context`, in
/// key order, calling `starting` with each key before rendering it. The values together may not
/// exceed [`MAX_OUTPUT`] either: no Secret could hold them.
pub fn render_all(
    templates: &BTreeMap<String, String>,
    context: &WireContext,
    mut starting: impl FnMut(&str),
) -> Result<BTreeMap<String, Vec<u8>>, Error> {
    if templates.is_empty() {
        return Ok(BTreeMap::new());
    }
    let env = sandbox();
    let ctx = context.to_value();
    let mut rendered = BTreeMap::new();
    let mut total = 0;
    for (key, text) in templates {
        starting(key);
        let value = render_one(&env, key, text, &ctx)?;
        total += value.len();
        if total > MAX_OUTPUT {
            return Err(Error::new(
                key,
                format!("the rendered values together exceed {MAX_OUTPUT} bytes (the limit of a Secret)"),
            ));
        }
        rendered.insert(key.clone(), value);
    }
    Ok(rendered)
}

fn render_one(env: &Environment<'static>, key: &str, text: &str, ctx: &Value) -> Result<Vec<u8>, Error> {
    let fail = |e: minijinja::Error| Error::new(key, describe(&e, text));
    let template = env.template_from_str(text).map_err(fail)?;
    let mut out = Bounded::default();
    match template.render_captured_to(ctx, &mut out) {
        Ok(_) => Ok(out.buf),
        Err(_) if out.overflowed => Err(Error::new(
            key,
            format!("the rendered value exceeds {MAX_OUTPUT} bytes (the limit of a Secret)"),
        )),
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

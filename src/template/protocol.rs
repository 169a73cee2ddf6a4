//! What the operator and `vaultsync render-templates` exchange: one [`Request`] as JSON on the
//! child's stdin, and [`Line`]s of JSON on its stdout. Values travel as base64 so binary data
//! survives; nothing goes through argv or the environment.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Context;

/// Everything the child needs: the templates (Secret key → text) and their context.
#[derive(Serialize, Deserialize)]
pub struct Request {
    /// Secret key → template text.
    pub templates: BTreeMap<String, String>,
    /// What the templates may see.
    pub context: WireContext,
}

/// [`Context`] in owned, serializable form.
#[derive(Serialize, Deserialize, PartialEq)]
pub struct WireContext {
    #[serde(with = "base64_map")]
    pub data: BTreeMap<String, Vec<u8>>,
    pub sources: Vec<WireSource>,
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// [`super::SourceContext`] in owned, serializable form.
#[derive(Serialize, Deserialize, PartialEq)]
pub struct WireSource {
    pub name: String,
    pub index: usize,
    pub kind: String,
    pub version: Option<u64>,
    #[serde(with = "base64_map")]
    pub data: BTreeMap<String, Vec<u8>>,
}

impl Request {
    /// The request for rendering `templates` against `context`.
    pub fn new(templates: &BTreeMap<String, String>, context: &Context) -> Request {
        Request {
            templates: templates.clone(),
            context: WireContext {
                data: context.data.clone(),
                sources: context
                    .sources
                    .iter()
                    .map(|s| WireSource {
                        name: s.name.clone(),
                        index: s.index,
                        kind: s.kind.to_owned(),
                        version: s.version,
                        data: s.data.clone(),
                    })
                    .collect(),
                name: context.name.clone(),
                namespace: context.namespace.clone(),
                labels: context.labels.clone(),
                annotations: context.annotations.clone(),
            },
        }
    }
}

/// One line of the child's stdout.
#[derive(Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum Line {
    /// The child starts rendering this template, so that a child killed by a limit can be
    /// blamed on the template that was running.
    Rendering(String),
    /// Every template rendered: Secret key → value. The last line.
    Rendered(#[serde(with = "base64_map")] BTreeMap<String, Vec<u8>>),
    /// A template failed; the message names no value. The last line.
    Failed { key: String, message: String },
}

impl std::fmt::Debug for Line {
    // Never print rendered values, only keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Line::Rendering(key) => f.debug_tuple("Rendering").field(key).finish(),
            Line::Rendered(values) => f.debug_tuple("Rendered").field(&values.keys()).finish(),
            Line::Failed { key, message } => f
                .debug_struct("Failed")
                .field("key", key)
                .field("message", message)
                .finish(),
        }
    }
}

/// A map of byte strings as a JSON object of base64 strings.
mod base64_map {
    use std::collections::BTreeMap;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(map: &BTreeMap<String, Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(map.iter().map(|(k, v)| (k, STANDARD.encode(v))))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Vec<u8>>, D::Error> {
        let encoded = BTreeMap::<String, String>::deserialize(d)?;
        encoded
            .into_iter()
            .map(|(k, v)| match STANDARD.decode(v) {
                Ok(bytes) => Ok((k, bytes)),
                // Name the key only: the text is a value.
                Err(_) => Err(D::Error::custom(format!("value of {k:?} is not base64"))),
            })
            .collect()
    }
}

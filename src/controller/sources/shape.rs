//! From merged source data to the Secret's data: templates, `templateOnly`, `envKeys`, and the
//! size limit.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use kube::ResourceExt;

use super::{Merged, keys};
use crate::api::VaultSecret;
use crate::controller::error::{Error, Result};
use crate::template::{self, MAX_OUTPUT};

/// The Secret's data, and the keys `envFrom` would skip (names only).
pub struct Shaped {
    /// Secret data. Dropped as soon as the sync ends.
    pub data: BTreeMap<String, ByteString>,
    /// Keys that are not environment variable names, when the Secret is `Opaque` and
    /// `envKeys` is off.
    pub env_skipped: Vec<String>,
}

/// Renders `vs`'s templates over `merged`, keeps the source keys unless `templateOnly`, applies
/// `envKeys`, and checks every key and the total size.
pub fn shape(vs: &VaultSecret, merged: &mut Merged) -> Result<Shaped> {
    let dest = &vs.spec.destination;
    let mut data = std::mem::take(&mut merged.data);
    if !dest.templates.is_empty() {
        for key in dest.templates.keys() {
            keys::check(key, "spec.destination.templates")?;
        }
        let rendered = template::render_all(&dest.templates, &context(vs, merged, &data))?;
        if dest.template_only {
            data.clear();
        }
        data.extend(rendered.into_iter().map(|(k, v)| (k, ByteString(v))));
    }
    merged.per_source.clear();
    if dest.env_keys {
        data = keys::to_env(data)?;
    }
    let size: usize = data.iter().map(|(k, v)| k.len() + v.0.len()).sum();
    if size > MAX_OUTPUT {
        return Err(Error::SecretTooLarge(format!(
            "the Secret's data would be {size} bytes, more than the {MAX_OUTPUT} bytes a Secret can hold"
        )));
    }
    let opaque = dest.type_.as_deref().is_none_or(|t| t == "Opaque");
    let env_skipped = match opaque && !dest.env_keys {
        true => data.keys().filter(|k| !keys::is_env_name(k)).cloned().collect(),
        false => Vec::new(),
    };
    Ok(Shaped { data, env_skipped })
}

fn context(vs: &VaultSecret, merged: &Merged, data: &BTreeMap<String, ByteString>) -> template::Context {
    let plain = |d: &BTreeMap<String, ByteString>| d.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect();
    template::Context {
        data: plain(data),
        sources: merged
            .sources
            .iter()
            .zip(&merged.per_source)
            .enumerate()
            .map(|(index, (status, source_data))| template::SourceContext {
                name: status.name.clone(),
                index,
                kind: "kv",
                version: status.version,
                data: plain(source_data),
            })
            .collect(),
        name: vs.name_any(),
        namespace: vs.namespace().unwrap_or_default(),
        labels: vs.labels().clone(),
        annotations: vs
            .annotations()
            .iter()
            .filter(|(k, _)| k.as_str() != "kubectl.kubernetes.io/last-applied-configuration")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

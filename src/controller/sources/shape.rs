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

impl std::fmt::Debug for Shaped {
    // Never print the data, only its keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shaped")
            .field("keys", &self.data.keys())
            .field("env_skipped", &self.env_skipped)
            .finish()
    }
}

/// Renders `vs`'s templates over `merged`, keeps the source keys unless `templateOnly`, applies
/// `envKeys`, and checks every key and the total size.
pub async fn shape(vs: &VaultSecret, merged: &mut Merged) -> Result<Shaped> {
    let dest = &vs.spec.destination;
    let mut data = std::mem::take(&mut merged.data);
    if !dest.templates.is_empty() {
        for key in dest.templates.keys() {
            keys::check(key, "spec.destination.templates")?;
        }
        let rendered = template::render(&dest.templates, &context(vs, merged, &data)).await?;
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::SourceStatus;

    fn vs(destination: serde_json::Value) -> VaultSecret {
        serde_json::from_value(json!({
            "apiVersion": "vaultsync.dev/v1alpha1", "kind": "VaultSecret",
            "metadata": {"name": "shop", "namespace": "team-a"},
            "spec": {"sources": [{"kv": {"mount": "secret", "path": "p"}}], "destination": destination},
        }))
        .unwrap()
    }

    fn merged(pairs: &[(&str, &str)]) -> Merged {
        let data: BTreeMap<String, ByteString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect();
        Merged {
            data: data.clone(),
            sources: vec![SourceStatus {
                name: "0".into(),
                kind: "kv".into(),
                version: Some(1),
                lease: None,
            }],
            overridden: Vec::new(),
            per_source: vec![data],
        }
    }

    fn keys(shaped: &Shaped) -> Vec<&str> {
        shaped.data.keys().map(String::as_str).collect()
    }

    #[tokio::test]
    async fn templated_keys_are_added_or_alone_with_template_only() {
        let added = shape(
            &vs(json!({"templates": {"url": "{{ user }}@{{ sources['0'].version }}"}})),
            &mut merged(&[("user", "u")]),
        )
        .await
        .unwrap();
        assert_eq!(keys(&added), ["url", "user"]);
        assert_eq!(added.data["url"].0, b"u@1");
        let alone = shape(
            &vs(json!({"templateOnly": true, "templates": {"url": "{{ user }}"}})),
            &mut merged(&[("user", "u")]),
        )
        .await
        .unwrap();
        assert_eq!(keys(&alone), ["url"]);
    }

    #[tokio::test]
    async fn env_keys_apply_to_templated_keys_too_and_nothing_is_reported_skipped() {
        let shaped = shape(
            &vs(json!({"envKeys": true, "templates": {"database.url": "x"}})),
            &mut merged(&[("db.password", "p")]),
        )
        .await
        .unwrap();
        assert_eq!(keys(&shaped), ["DATABASE_URL", "DB_PASSWORD"]);
        assert!(shaped.env_skipped.is_empty());
    }

    #[tokio::test]
    async fn keys_envfrom_would_skip_are_reported_for_opaque_secrets_only() {
        let shaped = shape(&vs(json!({})), &mut merged(&[("db.password", "p"), ("OK", "v")]))
            .await
            .unwrap();
        assert_eq!(shaped.env_skipped, ["db.password"]);
        let tls = shape(
            &vs(json!({"type": "kubernetes.io/tls"})),
            &mut merged(&[("tls.crt", "c")]),
        )
        .await
        .unwrap();
        assert!(tls.env_skipped.is_empty());
    }

    #[tokio::test]
    async fn a_template_key_a_secret_cannot_hold_and_an_oversized_secret_are_refused() {
        let err = shape(&vs(json!({"templates": {"bad/key": "x"}})), &mut merged(&[]))
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "InvalidKey");
        let half = "x".repeat(600 * 1024);
        let err = shape(&vs(json!({})), &mut merged(&[("a", &half), ("b", &half)]))
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "SecretTooLarge");
    }

    #[tokio::test]
    async fn every_template_in_the_examples_renders() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
        let mut rendered = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let text = std::fs::read_to_string(path).unwrap();
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let doc: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
                if doc["kind"] != "VaultSecret" || doc["spec"]["destination"]["templates"].is_null() {
                    continue;
                }
                let vs: VaultSecret = serde_json::from_value(doc).unwrap();
                let mut read = Vec::new();
                for (index, source) in vs.spec.sources.iter().enumerate() {
                    let kv = source.kv.as_ref().unwrap();
                    // Every listed key holds base64 text ("secret"), so decodeBase64 works too.
                    let data = kv
                        .keys
                        .iter()
                        .flatten()
                        .map(|k| (k.clone(), json!("c2VjcmV0")))
                        .collect();
                    let name = source.name_or_index(index);
                    let data = super::super::map_keys(data, kv.into(), &name).unwrap();
                    read.push((
                        SourceStatus {
                            name,
                            kind: "kv".into(),
                            version: Some(1),
                            lease: None,
                        },
                        data,
                    ));
                }
                let mut merged = super::super::merge(read).unwrap();
                let shaped = shape(&vs, &mut merged)
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", vs.metadata.name.unwrap_or_default()));
                assert!(!shaped.data.is_empty());
                rendered += 1;
            }
        }
        assert!(rendered >= 3, "{rendered} examples with templates");
    }

    #[tokio::test]
    async fn a_failing_template_is_a_template_error() {
        let err = shape(&vs(json!({"templates": {"url": "{{ nope }}"}})), &mut merged(&[]))
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "TemplateError");
        assert!(err.to_string().starts_with("template url: undefined value"), "{err}");
    }
}

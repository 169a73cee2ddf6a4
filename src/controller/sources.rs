//! Reading every source of a VaultSecret and merging them into Secret data.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use serde_json::Value;
use vaultrs::client::VaultClient;

use super::error::{Error, Result};
use crate::api::{Source, SourceStatus};
use crate::metrics::Metrics;
use crate::vault;

/// Data read from all sources, merged, plus what the status may say about it.
pub struct Merged {
    /// Secret data. Dropped as soon as the sync ends.
    pub data: BTreeMap<String, ByteString>,
    /// Per-source status, in spec order.
    pub sources: Vec<SourceStatus>,
    /// Keys set by more than one source, with the sources involved (names only, never values).
    pub overridden: Vec<String>,
}

impl std::fmt::Debug for Merged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Merged")
            .field("keys", &self.data.keys())
            .field("sources", &self.sources)
            .finish()
    }
}

/// The name a source goes by in status and messages: its `name`, or its index.
pub fn source_name(source: &Source, index: usize) -> String {
    source.name.clone().unwrap_or_else(|| index.to_string())
}

/// Reads every source in order with `client` and merges them; a later source wins on a duplicate key.
pub async fn read_all(client: &VaultClient, sources: &[Source], metrics: &Metrics) -> Result<Merged> {
    let mut read = Vec::with_capacity(sources.len());
    for (index, source) in sources.iter().enumerate() {
        let name = source_name(source, index);
        let Some(kv) = &source.kv else {
            return Err(Error::InvalidSpec(format!("source {name} sets no source kind")));
        };
        let secret = vault::observe(metrics, "read", vault::kv::read(client, kv)).await?;
        let data = select(secret.data, kv.keys.as_deref(), &name)?;
        read.push((
            SourceStatus {
                name,
                kind: "kv".into(),
                version: secret.version,
            },
            data,
        ));
    }
    merge(read)
}

/// Keeps only `keys` (all when `None`) and turns JSON values into bytes.
fn select(
    mut data: BTreeMap<String, Value>,
    keys: Option<&[String]>,
    source_name: &str,
) -> Result<BTreeMap<String, ByteString>> {
    if let Some(keys) = keys {
        let mut kept = BTreeMap::new();
        for key in keys {
            let value = data.remove(key).ok_or_else(|| Error::KeyNotFound {
                source_name: source_name.to_owned(),
                key: key.clone(),
            })?;
            kept.insert(key.clone(), value);
        }
        data = kept;
    }
    Ok(data.into_iter().map(|(k, v)| (k, ByteString(value_bytes(v)))).collect())
}

/// A string is written as its text; any other JSON value as compact JSON.
fn value_bytes(value: Value) -> Vec<u8> {
    match value {
        Value::String(s) => s.into_bytes(),
        other => other.to_string().into_bytes(),
    }
}

fn merge(read: Vec<(SourceStatus, BTreeMap<String, ByteString>)>) -> Result<Merged> {
    let mut data = BTreeMap::new();
    let mut origin: BTreeMap<String, String> = BTreeMap::new();
    let mut overridden = Vec::new();
    let mut sources = Vec::with_capacity(read.len());
    for (status, source_data) in read {
        for (key, value) in source_data {
            check_key(&key, &status.name)?;
            if let Some(previous) = origin.insert(key.clone(), status.name.clone()) {
                overridden.push(format!("{key} (source {previous} overridden by {})", status.name));
            }
            data.insert(key, value);
        }
        sources.push(status);
    }
    Ok(Merged {
        data,
        sources,
        overridden,
    })
}

/// Secret keys must be non-empty, at most 253 characters of `[-._a-zA-Z0-9]`.
fn check_key(key: &str, source_name: &str) -> Result<()> {
    let valid = !key.is_empty()
        && key.len() <= 253
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidKey(format!(
            "source {source_name} has key {key:?}, which is not a valid Secret key ([-._a-zA-Z0-9], at most 253 characters)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(name: &str) -> SourceStatus {
        SourceStatus {
            name: name.into(),
            kind: "kv".into(),
            version: None,
        }
    }

    fn bytes(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn a_later_source_wins_and_the_override_is_reported_without_values() {
        let merged = merge(vec![
            (status("0"), bytes(&[("user", "a"), ("password", "first-secret")])),
            (status("db"), bytes(&[("password", "second-secret")])),
        ])
        .unwrap();
        assert_eq!(merged.data, bytes(&[("user", "a"), ("password", "second-secret")]));
        assert_eq!(merged.overridden, vec!["password (source 0 overridden by db)"]);
        assert!(
            !format!("{merged:?}").contains("secret\""),
            "Debug must not show values"
        );
    }

    #[test]
    fn keys_select_a_subset_and_a_missing_key_is_an_error() {
        let data: BTreeMap<String, Value> = [
            ("a".into(), json!("1")),
            ("b".into(), json!(2)),
            ("c".into(), json!({"x": true})),
        ]
        .into();
        let kept = select(data.clone(), Some(&["b".into(), "c".into()]), "0").unwrap();
        assert_eq!(kept, bytes(&[("b", "2"), ("c", "{\"x\":true}")]));
        let err = select(data, Some(&["zz".into()]), "0").unwrap_err();
        assert_eq!(err.reason(), "KeyNotFound");
    }

    #[test]
    fn keys_a_secret_cannot_hold_are_refused_with_the_key_named() {
        let err = merge(vec![(status("0"), bytes(&[("bad key/", "v")]))]).unwrap_err();
        assert_eq!(err.reason(), "InvalidKey");
        assert!(err.to_string().contains("\"bad key/\""));
    }
}

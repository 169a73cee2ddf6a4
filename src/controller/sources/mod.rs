//! Reading every source of a VaultSecret and merging them into Secret data.

mod keys;
mod shape;

pub use shape::shape;

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::ByteString;
use serde_json::Value;

use super::Context;
use super::error::{Error, Result};
use super::leases::Book;
use crate::api::{DynamicSource, KvSource, LeasedSpec, Source, SourceSpec, SourceStatus};
use crate::vault::{self, Connection};

/// Data read from all sources, merged, plus what the status may say about it.
pub struct Merged {
    /// Secret data. Dropped as soon as the sync ends.
    pub data: BTreeMap<String, ByteString>,
    /// Per-source status, in spec order.
    pub sources: Vec<SourceStatus>,
    /// Keys set by more than one source, with the sources involved (names only, never values).
    pub overridden: Vec<String>,
    /// Each source's own data, in spec order, for templates. Dropped as soon as the sync ends.
    pub per_source: Vec<BTreeMap<String, ByteString>>,
}

impl std::fmt::Debug for Merged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Merged")
            .field("keys", &self.data.keys())
            .field("sources", &self.sources)
            .finish()
    }
}

/// Reads every source in order with `client` and merges them; a later source wins on a duplicate
/// key. Leased sources go through `book` (kept credentials, renewals, new leases). `age`: which
/// earlier identical KV read may serve this sync; `hold`: whether VaultSecrets that read the same
/// wait to sync, to keep a KV read for them.
pub async fn read_all(
    handle: &vault::Handle,
    conn: &Connection,
    sources: &[Source],
    book: &mut Book,
    ctx: &Context,
    (age, hold): (vault::kv::Age, &vault::kv::Hold),
) -> Result<Merged> {
    let client = handle.client.as_ref();
    let mut read = Vec::with_capacity(sources.len());
    for (index, source) in sources.iter().enumerate() {
        let name = source.name_or_index(index);
        let spec = source.spec().ok_or_else(|| {
            Error::InvalidSpec(format!(
                "spec.sources[{index}] must set exactly one of kv, dynamic or pki"
            ))
        })?;
        let mut status = SourceStatus {
            name: name.clone(),
            kind: spec.kind().into(),
            ..Default::default()
        };
        let data = match spec {
            SourceSpec::Kv(kv) => {
                let secret = ctx.kv.read(client, kv, age, hold.clone()).await?;
                status.version = secret.version;
                map_keys(select(secret.data, kv.keys.as_deref(), &name)?, kv.into(), &name)?
            }
            SourceSpec::Leased(leased) => {
                let obtained = book.obtain(handle, conn, leased, &name, ctx).await?;
                status.lease = Some(Box::new(obtained.lease));
                let mapping = match leased {
                    LeasedSpec::Dynamic(d) => Mapping::from(d),
                    // A certificate's keys are fixed (tls.crt, tls.key, ca.crt).
                    LeasedSpec::Pki(_) => Mapping::default(),
                };
                map_keys(select(obtained.data, mapping.keys, &name)?, mapping, &name)?
            }
        };
        read.push((status, data));
    }
    merge(read)
}

/// How a source's keys become Secret keys.
#[derive(Default, Clone, Copy)]
struct Mapping<'a> {
    keys: Option<&'a [String]>,
    decode_base64: &'a [String],
    rename: Option<&'a BTreeMap<String, String>>,
    prefix: Option<&'a str>,
}

impl<'a> From<&'a KvSource> for Mapping<'a> {
    fn from(kv: &'a KvSource) -> Self {
        Mapping {
            keys: kv.keys.as_deref(),
            decode_base64: &kv.decode_base64,
            rename: Some(&kv.rename),
            prefix: kv.prefix.as_deref(),
        }
    }
}

impl<'a> From<&'a DynamicSource> for Mapping<'a> {
    fn from(d: &'a DynamicSource) -> Self {
        Mapping {
            keys: d.keys.as_deref(),
            decode_base64: &[],
            rename: Some(&d.rename),
            prefix: d.prefix.as_deref(),
        }
    }
}

/// Keeps only `keys` (all when `None`).
fn select(
    mut data: BTreeMap<String, Value>,
    keys: Option<&[String]>,
    source_name: &str,
) -> Result<BTreeMap<String, Value>> {
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
    Ok(data)
}

/// Turns JSON values into bytes, decoding the `decodeBase64` keys, then applies `rename` and
/// `prefix`. A key named in `decodeBase64` or `rename` must exist.
fn map_keys(
    mut data: BTreeMap<String, Value>,
    mapping: Mapping<'_>,
    source_name: &str,
) -> Result<BTreeMap<String, ByteString>> {
    let missing = |key: &String| Error::KeyNotFound {
        source_name: source_name.to_owned(),
        key: key.clone(),
    };
    let mut bytes = BTreeMap::new();
    for key in mapping.decode_base64 {
        let value = data.remove(key).ok_or_else(|| missing(key))?;
        let decoded = value
            .as_str()
            .and_then(|text| STANDARD.decode(text.trim()).ok())
            .ok_or_else(|| {
                Error::InvalidValue(format!(
                    "source {source_name} key {key:?} is listed in decodeBase64 but does not hold standard base64"
                ))
            })?;
        bytes.insert(key.clone(), decoded);
    }
    bytes.extend(data.into_iter().map(|(k, v)| (k, value_bytes(v))));
    let no_rename = BTreeMap::new();
    let rename = mapping.rename.unwrap_or(&no_rename);
    for from in rename.keys() {
        if !bytes.contains_key(from) {
            return Err(missing(from));
        }
    }
    let prefix = mapping.prefix.unwrap_or_default();
    Ok(bytes
        .into_iter()
        .map(|(key, value)| {
            let key = rename.get(&key).cloned().unwrap_or(key);
            (format!("{prefix}{key}"), ByteString(value))
        })
        .collect())
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
    let mut per_source = Vec::with_capacity(read.len());
    for (status, source_data) in read {
        for (key, value) in &source_data {
            keys::check(key, &format!("source {}", status.name))?;
            if let Some(previous) = origin.insert(key.clone(), status.name.clone()) {
                overridden.push(format!("{key} (source {previous} overridden by {})", status.name));
            }
            data.insert(key.clone(), value.clone());
        }
        sources.push(status);
        per_source.push(source_data);
    }
    Ok(Merged {
        data,
        sources,
        overridden,
        per_source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(name: &str) -> SourceStatus {
        SourceStatus {
            name: name.into(),
            kind: "kv".into(),
            ..Default::default()
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
        let kept = map_keys(kept, (&kv()).into(), "0").unwrap();
        assert_eq!(kept, bytes(&[("b", "2"), ("c", "{\"x\":true}")]));
        let err = select(data, Some(&["zz".into()]), "0").unwrap_err();
        assert_eq!(err.reason(), "KeyNotFound");
    }

    fn kv() -> KvSource {
        serde_json::from_value(json!({"mount": "secret", "path": "p"})).unwrap()
    }

    #[test]
    fn base64_keys_become_raw_bytes_then_keys_are_renamed_and_prefixed() {
        let data: BTreeMap<String, Value> = [
            ("keystore".into(), json!("/wAB")),
            ("user".into(), json!("app")),
            ("pass".into(), json!("pw")),
        ]
        .into();
        let mut source = kv();
        source.decode_base64 = vec!["keystore".into()];
        source.rename = [("pass".to_owned(), "password".to_owned())].into();
        source.prefix = Some("db.".into());
        let mapped = map_keys(data, (&source).into(), "db").unwrap();
        let keys: Vec<_> = mapped.keys().cloned().collect();
        assert_eq!(keys, ["db.keystore", "db.password", "db.user"]);
        assert_eq!(mapped["db.keystore"].0, vec![0xff, 0x00, 0x01]);
        assert_eq!(mapped["db.password"].0, b"pw");
    }

    #[test]
    fn a_renamed_or_decoded_key_must_exist_and_decoding_errors_do_not_show_the_value() {
        let data: BTreeMap<String, Value> = [("a".into(), json!("not base64 secret!"))].into();
        let mut source = kv();
        source.rename = [("zz".to_owned(), "b".to_owned())].into();
        assert_eq!(
            map_keys(data.clone(), (&source).into(), "0").unwrap_err().reason(),
            "KeyNotFound"
        );
        let mut source = kv();
        source.decode_base64 = vec!["a".into()];
        let err = map_keys(data, (&source).into(), "0").unwrap_err();
        assert_eq!(err.reason(), "InvalidValue");
        assert!(!err.to_string().contains("secret!"), "{err}");
    }

    #[test]
    fn keys_a_secret_cannot_hold_are_refused_with_the_source_named() {
        let err = merge(vec![(status("0"), bytes(&[("bad key/", "v")]))]).unwrap_err();
        assert_eq!(err.reason(), "InvalidKey");
        assert!(err.to_string().contains("source 0 has key \"bad key/\""));
    }
}

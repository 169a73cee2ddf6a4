//! `spec.sources`: what a VaultSecret reads — KV secrets, and leased secrets (dynamic
//! credentials, PKI certificates).

use std::collections::BTreeMap;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::duration::DURATION_PATTERN;
use super::paths::{NO_DOT_SEGMENTS_RULE, NO_RESERVED_SEGMENTS_RULE, VAULT_PATH_PATTERN};

/// One secret to read. Exactly one source kind is set per entry.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("[has(self.kv), has(self.dynamic), has(self.pki)].filter(x, x).size() == 1").message("each source sets exactly one kind: kv, dynamic or pki"))]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// Optional name, used in status and messages (default: the source's index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"))]
    pub name: Option<String>,

    /// A secret of a KV secrets engine (version 1 or 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv: Option<KvSource>,

    /// Credentials Vault issues with a lease (database `creds/<role>`, AWS, RabbitMQ, …): renewed,
    /// rotated before they expire, and revoked once superseded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic: Option<Box<DynamicSource>>,

    /// A certificate issued by a PKI secrets engine, re-issued before it expires. Writes
    /// `tls.crt` (certificate and chain), `tls.key` and `ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pki: Option<Box<PkiSource>>,
}

/// The kinds of source, one variant per field: match it, never probe the fields.
#[derive(Clone, Copy, Debug)]
pub enum SourceSpec<'a> {
    Kv(&'a KvSource),
    Leased(LeasedSpec<'a>),
}

/// The kinds Vault issues with a lifetime: renewed, replaced and revoked by vaultsync.
#[derive(Clone, Copy, Debug)]
pub enum LeasedSpec<'a> {
    Dynamic(&'a DynamicSource),
    Pki(&'a PkiSource),
}

impl Source {
    /// The one kind set, or `None` for an object the schema's rule did not check (stored before
    /// it existed) that sets none or several.
    pub fn spec(&self) -> Option<SourceSpec<'_>> {
        // Destructured, so a new field does not compile until it has its variant.
        let Source {
            name: _,
            kv,
            dynamic,
            pki,
        } = self;
        let kinds = [
            kv.as_ref().map(SourceSpec::Kv),
            dynamic.as_deref().map(|d| SourceSpec::Leased(LeasedSpec::Dynamic(d))),
            pki.as_deref().map(|p| SourceSpec::Leased(LeasedSpec::Pki(p))),
        ];
        let mut set = kinds.into_iter().flatten();
        match (set.next(), set.next()) {
            (Some(spec), None) => Some(spec),
            _ => None,
        }
    }

    /// The leased kind, if the source is one (dynamic credentials, certificates).
    pub fn leased(&self) -> Option<LeasedSpec<'_>> {
        match self.spec()? {
            SourceSpec::Leased(leased) => Some(leased),
            SourceSpec::Kv(_) => None,
        }
    }

    /// Whether the source is issued with a lifetime (dynamic credentials, certificates).
    pub fn is_leased(&self) -> bool {
        self.leased().is_some()
    }

    /// The name the source goes by in status and messages: its `name`, or its index.
    pub fn name_or_index(&self, index: usize) -> String {
        self.name.clone().unwrap_or_else(|| index.to_string())
    }
}

impl SourceSpec<'_> {
    /// The kind as shown in status and messages: `kv`, `dynamic` or `pki`.
    pub fn kind(self) -> &'static str {
        match self {
            SourceSpec::Kv(_) => "kv",
            SourceSpec::Leased(leased) => leased.kind(),
        }
    }
}

impl LeasedSpec<'_> {
    /// `dynamic` or `pki`.
    pub fn kind(self) -> &'static str {
        match self {
            LeasedSpec::Dynamic(_) => "dynamic",
            LeasedSpec::Pki(_) => "pki",
        }
    }
}

/// A secret in a KV secrets engine.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.version) || self.engine == 'v2'").message("version can only be pinned for engine v2"))]
#[x_kube(validation = Rule::new("self.engine == 'v2' || !self.path.split('/').exists(s, s in ['sys', 'auth', 'cubbyhole', 'identity'])").message("the path of a kv v1 source may not name Vault's reserved paths sys, auth, cubbyhole or identity"))]
#[serde(rename_all = "camelCase")]
pub struct KvSource {
    /// Mount path of the engine, e.g. `secret`.
    #[schemars(length(min = 1, max = 512), regex(pattern = VAULT_PATH_PATTERN))]
    #[x_kube(validation = Rule::new(NO_DOT_SEGMENTS_RULE).message("mount may not hold '.' or '..' segments"), validation = Rule::new(NO_RESERVED_SEGMENTS_RULE).message("mount may not name Vault's reserved paths sys, auth, cubbyhole or identity"))]
    pub mount: String,

    /// Path of the secret within the mount, e.g. `shop/config`.
    #[schemars(length(min = 1, max = 1024), regex(pattern = VAULT_PATH_PATTERN))]
    #[x_kube(validation = Rule::new(NO_DOT_SEGMENTS_RULE).message("path may not hold '.' or '..' segments"))]
    pub path: String,

    /// Engine version.
    #[serde(default)]
    pub engine: KvEngine,

    /// Pin a KV v2 version instead of following the latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub version: Option<u64>,

    /// Only these keys of the secret; all keys when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub keys: Option<Vec<String>>,

    /// Keys written as raw bytes: their values hold standard base64 (binary files, keystores).
    /// Applied before `rename` and `prefix`, to the secret's own key names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub decode_base64: Vec<String>,

    /// New names for keys of the secret (`{from: to}`), applied after `keys` and before `prefix`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 256))]
    pub rename: BTreeMap<String, String>,

    /// Prepended to every key of this source, after `rename`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub prefix: Option<String>,
}

/// KV secrets engine version.
#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum KvEngine {
    /// KV version 1 (no versions).
    V1,
    /// KV version 2 (versioned, the default `secret/` mount of a dev server).
    #[default]
    V2,
}

/// Any Vault path whose response carries a lease, e.g. `database` + `creds/app`. The Secret
/// gets the response's `data` keys (for database credentials: `username`, `password`).
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.method != 'GET' || !has(self.params) || size(self.params) == 0").message("params need method POST or PUT"))]
#[x_kube(validation = Rule::new("!self.path.split('/').exists(s, s in ['sys', 'auth', 'cubbyhole', 'identity'])").message("the path of a dynamic source may not name Vault's reserved paths sys, auth, cubbyhole or identity"))]
#[serde(rename_all = "camelCase")]
pub struct DynamicSource {
    /// Mount path of the secrets engine, e.g. `database`.
    #[schemars(length(min = 1, max = 512), regex(pattern = VAULT_PATH_PATTERN))]
    #[x_kube(validation = Rule::new(NO_DOT_SEGMENTS_RULE).message("mount may not hold '.' or '..' segments"), validation = Rule::new(NO_RESERVED_SEGMENTS_RULE).message("mount may not name Vault's reserved paths sys, auth, cubbyhole or identity"))]
    pub mount: String,

    /// Path within the mount, e.g. `creds/app`.
    #[schemars(length(min = 1, max = 1024), regex(pattern = VAULT_PATH_PATTERN))]
    #[x_kube(validation = Rule::new(NO_DOT_SEGMENTS_RULE).message("path may not hold '.' or '..' segments"))]
    pub path: String,

    /// HTTP method of the request.
    #[serde(default)]
    pub method: RequestMethod,

    /// Request parameters (sent as the JSON body of a POST or PUT).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub params: BTreeMap<String, String>,

    /// Only these keys of the response; all keys when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub keys: Option<Vec<String>>,

    /// New names for keys of the response (`{from: to}`), applied after `keys` and before `prefix`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 256))]
    pub rename: BTreeMap<String, String>,

    /// Prepended to every key of this source, after `rename`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub prefix: Option<String>,
}

/// HTTP method of a dynamic source's request.
#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RequestMethod {
    /// Read (database `creds/<role>`).
    #[default]
    #[serde(rename = "GET")]
    Get,
    /// Write with parameters (e.g. AWS `sts/<role>`).
    #[serde(rename = "POST")]
    Post,
    /// Same as POST for Vault.
    #[serde(rename = "PUT")]
    Put,
}

impl RequestMethod {
    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestMethod::Get => "GET",
            RequestMethod::Post => "POST",
            RequestMethod::Put => "PUT",
        }
    }
}

/// A certificate from a PKI secrets engine's `issue/<role>`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PkiSource {
    /// Mount path of the PKI engine, e.g. `pki`.
    #[schemars(length(min = 1, max = 512), regex(pattern = VAULT_PATH_PATTERN))]
    #[x_kube(validation = Rule::new(NO_DOT_SEGMENTS_RULE).message("mount may not hold '.' or '..' segments"), validation = Rule::new(NO_RESERVED_SEGMENTS_RULE).message("mount may not name Vault's reserved paths sys, auth, cubbyhole or identity"))]
    pub mount: String,

    /// PKI role to issue with.
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[^/\s]+$"))]
    pub role: String,

    /// Common name of the certificate.
    #[schemars(length(min = 1, max = 256))]
    pub common_name: String,

    /// DNS subject alternative names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub alt_names: Vec<String>,

    /// IP subject alternative names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub ip_sans: Vec<String>,

    /// Requested lifetime (Go duration); the role's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub ttl: Option<String>,
}

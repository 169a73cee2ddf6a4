//! `spec` of a VaultSecret: where to read from and what Secret to write.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::auth::Auth;
use super::duration::DURATION_PATTERN;
use super::source::Source;
use super::status::VaultSecretStatus;

/// A VaultSecret reads one or more secrets from Vault or OpenBao and keeps one Kubernetes Secret,
/// in its own namespace, in sync with them.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[allow(clippy::duplicated_attributes)] // several printcolumn(type_ = ...) entries, not duplicates
#[kube(
    group = "vaultsync.dev",
    version = "v1alpha1",
    kind = "VaultSecret",
    namespaced,
    status = "VaultSecretStatus",
    shortname = "vsec",
    category = "vaultsync",
    doc = "VaultSecret keeps a Kubernetes Secret in sync with secrets read from Vault or OpenBao.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Secret", type_ = "string", json_path = ".status.secretName"),
    printcolumn(name = "Last sync", type_ = "date", json_path = ".status.lastSyncTime"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct VaultSecretSpec {
    /// Vault or OpenBao server to read from. Defaults come from the operator's flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<Box<VaultConnection>>,

    /// How to log in to Vault. Every reference is resolved in this VaultSecret's namespace. When
    /// absent, the operator's own identity is used, but only in namespaces the operator's
    /// `--default-identity-namespaces` allow-list names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Box<Auth>>,

    /// Secrets to read, merged into one Secret in order: a later source wins on a duplicate key.
    /// Source names are unique.
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new("self.all(x, !has(x.name) || self.exists_one(y, has(y.name) && y.name == x.name))").message("source names must be unique"))]
    pub sources: Vec<Source>,

    /// The Kubernetes Secret to write.
    #[serde(default)]
    pub destination: Destination,

    /// How often the sources are read again.
    #[serde(default)]
    pub refresh: Refresh,

    /// Workloads to restart when the Secret's content changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Box<Rollout>>,
}

/// Connection settings for one Vault or OpenBao server.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VaultConnection {
    /// Server address, e.g. `https://vault.example:8200`. Defaults to the operator's `--vault-address`.
    /// Only addresses the operator's administrator allows (`--vault-address`,
    /// `--allowed-vault-addresses`) are used; any other ends `VaultAddressNotAllowed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512), regex(pattern = r"^https?://[^\s/?#@]+(/[^\s?#@%]*)?$"))]
    pub address: Option<String>,

    /// Vault Enterprise / OpenBao namespace, sent as the `X-Vault-Namespace` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 256),
        regex(pattern = r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*/?$")
    )]
    pub namespace: Option<String>,

    /// PEM CA bundle that signs the server's certificate, from a Secret in this VaultSecret's
    /// namespace. Defaults to the operator's `--vault-ca-file`, then the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

/// A key of a Secret in the VaultSecret's own namespace.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// The Kubernetes Secret that vaultsync writes.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("!has(self.templateOnly) || !self.templateOnly || (has(self.templates) && size(self.templates) > 0)").message("templateOnly needs at least one template"))]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    /// Secret name in the VaultSecret's namespace (default: the VaultSecret's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    #[x_kube(validation = Rule::new("!self.endsWith('.vaultsync-leases')").message("names ending in .vaultsync-leases are the operator's own lease Secrets"))]
    pub name: Option<String>,

    /// Secret type (default `Opaque`). Privileged types cannot be written.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    #[x_kube(validation = Rule::new("!(self in ['kubernetes.io/service-account-token', 'bootstrap.kubernetes.io/token'])").message("privileged Secret types cannot be written"))]
    #[schemars(length(min = 1, max = 253))]
    pub type_: Option<String>,

    /// Labels added to the Secret (not `app.kubernetes.io/managed-by` nor `vaultsync.dev/...`,
    /// which the operator sets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new("self.all(k, k != 'app.kubernetes.io/managed-by' && !k.startsWith('vaultsync.dev/'))").message("labels app.kubernetes.io/managed-by and vaultsync.dev/* are the operator's"))]
    pub labels: BTreeMap<String, String>,

    /// Annotations added to the Secret (not `vaultsync.dev/...`, which the operator sets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new("self.all(k, !k.startsWith('vaultsync.dev/'))").message("annotations vaultsync.dev/* are the operator's"))]
    pub annotations: BTreeMap<String, String>,

    /// Secret keys rendered from templates (minijinja syntax) over the sources' data; see
    /// `docs/api.md` for the context and filters. A templated key replaces a source key of the
    /// same name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub templates: BTreeMap<String, String>,

    /// Write only the templated keys, not the sources' keys.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub template_only: bool,

    /// Turn every key into a valid environment variable name for `envFrom` (`db.password` →
    /// `DB_PASSWORD`): upper case, other characters than letters and digits become `_`, and a
    /// leading digit gets a `_` before it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub env_keys: bool,

    /// Adopt a Secret of that name that exists but was not created by vaultsync. Secrets owned by
    /// another controller are never adopted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub take_over: bool,
}

/// When the sources are read again.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Refresh {
    /// Interval between reads of the sources (Go duration, e.g. `1h`, `15m`; at least `10s`;
    /// default `1h`). Refreshes of VaultSecrets reading the same secrets as the same identity are
    /// aligned (and share one read); others spread over the interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('10s')").message("refresh.interval must be at least 10s"))]
    pub interval: Option<String>,

    /// Leased sources: renew (or, for certificates, re-issue) when this percentage of the
    /// lease's lifetime has passed (default 67), with a little jitter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 90))]
    pub renewal_percent: Option<u8>,

    /// Leased sources: how long a superseded lease stays valid after its replacement was written
    /// to the Secret, so workloads can restart onto the new credentials (Go duration, default
    /// `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub revoke_grace_period: Option<String>,

    /// Leased sources: revoke the leases when the VaultSecret is deleted (default true). Uses a
    /// finalizer; if Vault stays unreachable, deletion goes ahead after a few attempts and a
    /// Warning Event names the leases left to expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke_on_delete: Option<bool>,
}

impl Refresh {
    /// `renewalPercent` as a fraction.
    pub fn renewal_fraction(&self) -> f64 {
        f64::from(self.renewal_percent.unwrap_or(67)) / 100.0
    }

    /// Whether leases are revoked when the VaultSecret is deleted.
    pub fn revokes_on_delete(&self) -> bool {
        self.revoke_on_delete.unwrap_or(true)
    }
}

/// Workloads restarted (like `kubectl rollout restart`, but idempotent) when the Secret's content
/// changes. Never on the first sync, an operator restart, an unchanged refresh or a metadata-only
/// change. Changes that reach one workload within the debounce window restart it once.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// Workloads in this VaultSecret's namespace to restart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub targets: Vec<RolloutTarget>,

    /// Also restart every Deployment, StatefulSet and DaemonSet in this namespace whose pod
    /// template uses the Secret (`envFrom`, `env[].valueFrom.secretKeyRef`, `secret` and
    /// `projected` volumes, init containers included), unless it is annotated
    /// `vaultsync.dev/rollout: "false"`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto: bool,

    /// How long to wait after a change before restarting, so that changes of several Secrets
    /// reaching one workload restart it once (Go duration, at most `10m`). Defaults to the
    /// operator's `--rollout-debounce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) <= duration('10m')").message("rollout.debounce must be at most 10m"))]
    pub debounce: Option<String>,
}

impl Rollout {
    /// Whether anything is to be restarted at all.
    pub fn is_active(&self) -> bool {
        self.auto || !self.targets.is_empty()
    }
}

/// One workload to restart, in the VaultSecret's namespace.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RolloutTarget {
    /// Kind of the workload.
    pub kind: WorkloadKind,
    /// Name of the workload.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,
}

/// A kind of workload that can be restarted.
#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadKind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` StatefulSet.
    StatefulSet,
    /// `apps/v1` DaemonSet.
    DaemonSet,
    /// Argo Rollouts `argoproj.io/v1alpha1` Rollout (when that CRD is installed).
    Rollout,
}

impl WorkloadKind {
    /// The kind's name, as in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::Rollout => "Rollout",
        }
    }
}

impl std::fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

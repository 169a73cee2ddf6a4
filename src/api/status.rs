//! `status` of a VaultSecret: what was synced, never the values.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a VaultSecret.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VaultSecretStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready` tells whether the Secret holds the current content of every source;
    /// `RolloutRestart` whether the workloads of `spec.rollout` were restarted after its last change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// When the Secret's content was last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,

    /// Name of the Secret being written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,

    /// Keyed hash (HMAC-SHA256 under a key only the operator holds) of the Secret's data: changes
    /// when the content changes, reveals nothing about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<String>,

    /// What was read from each source, in `spec.sources` order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceStatus>,

    /// `secretHash` of content whose workload restarts (`spec.rollout`) have not all completed
    /// yet. Kept here so a restart of the operator finishes them; cleared once they have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_rollout_hash: Option<String>,

    /// Leases that were replaced (or whose source was removed) and are revoked at `revokeAfter`.
    /// Kept here so that a restart of the operator still revokes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_revocations: Vec<PendingRevocation>,
}

/// What was read from one source.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    /// The source's name, or its index in `spec.sources`.
    pub name: String,
    /// The source kind (`kv`, `dynamic` or `pki`).
    pub kind: String,
    /// KV v2 version that was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The lease of a `dynamic` source, or the certificate of a `pki` source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Box<LeaseStatus>>,
}

/// The lease behind a leased source. Lease IDs name a lease; they grant nothing by themselves.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LeaseStatus {
    /// Vault's lease ID; for a certificate, `serial:` and its serial number.
    pub id: String,
    /// When the lease was issued.
    pub issued: Time,
    /// When the lease (or certificate) expires, as last renewed.
    pub expiry: Time,
    /// Lifetime Vault granted at issue, in seconds; each renewal asks for as much again.
    pub duration_seconds: u64,
    /// Whether Vault lets the lease be renewed.
    pub renewable: bool,
    /// Keyed hash of the request that issued it (connection, mount, path, parameters): a spec
    /// edit that leaves it unchanged keeps the lease.
    pub request_hash: String,
    /// Short hash of the Vault token that issued the lease (never the token). Vault revokes the
    /// lease when that token expires, so the lease is replaced before then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_ref: Option<String>,
    /// What happens next to the lease.
    pub next_action: LeaseAction,
    /// When it happens.
    pub next_action_time: Time,
}

/// The next step in a lease's life.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseAction {
    /// Extend the lease.
    Renew,
    /// Issue new credentials (the lease cannot be extended far enough), then revoke this lease
    /// after `spec.refresh.revokeGracePeriod`.
    Rotate,
}

/// A superseded lease waiting for its revocation.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PendingRevocation {
    /// Vault's lease ID.
    pub lease_id: String,
    /// The source it was issued for.
    pub source: String,
    /// When it is revoked.
    pub revoke_after: Time,
    /// When it expires anyway; past this it is dropped even if revocation keeps failing.
    pub expiry: Time,
    /// Short hash of the Vault token that issued it: that token is kept until the lease is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_ref: Option<String>,
}

/// Type of the condition that tells whether the Secret is in sync.
pub const READY: &str = "Ready";

/// Type of the condition that tells whether the workloads of `spec.rollout` were restarted after
/// the last change of the Secret's content.
pub const ROLLOUT_RESTART: &str = crate::reasons::event::ROLLOUT_RESTART;

impl VaultSecretStatus {
    /// The `Ready` condition, if any.
    pub fn ready(&self) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == READY)
    }

    /// The `RolloutRestart` condition, if any.
    pub fn rollout_restart(&self) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == ROLLOUT_RESTART)
    }
}

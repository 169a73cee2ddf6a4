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
}

/// What was read from one source.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    /// The source's name, or its index in `spec.sources`.
    pub name: String,
    /// The source kind (`kv`).
    pub kind: String,
    /// KV v2 version that was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// Type of the condition that tells whether the Secret is in sync.
pub const READY: &str = "Ready";

/// Type of the condition that tells whether the workloads of `spec.rollout` were restarted after
/// the last change of the Secret's content.
pub const ROLLOUT_RESTART: &str = "RolloutRestart";

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

//! Reporting: building the status and writing it only when it changed, and Events.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::super::Context;
use super::super::error::{Error, Result};
use crate::MANAGER;
use crate::api::{READY, VaultSecret, VaultSecretStatus};
use crate::events::{Event, EventType};

/// The `Ready` condition for `vs`, keeping the previous transition time when the status is the same.
pub fn ready(vs: &VaultSecret, ok: bool, reason: &str, message: String) -> Condition {
    condition(vs, READY, ok, reason, message)
}

/// Condition `type_` for `vs`, keeping the previous transition time when the status is the same.
pub fn condition(vs: &VaultSecret, type_: &str, ok: bool, reason: &str, message: String) -> Condition {
    let status = if ok { "True" } else { "False" };
    let previous = vs
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_));
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Time(jiff::Timestamp::now()),
    };
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: vs.metadata.generation,
        last_transition_time,
    }
}

/// `status` with `condition` replacing the condition of the same type.
pub fn with_condition(mut status: VaultSecretStatus, condition: Condition) -> VaultSecretStatus {
    status.conditions.retain(|c| c.type_ != condition.type_);
    status.conditions.push(condition);
    status.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    status
}

/// Writes `status` with server-side apply unless it equals the current one. Returns whether it wrote.
pub async fn write_if_changed(api: &Api<VaultSecret>, vs: &VaultSecret, status: VaultSecretStatus) -> Result<bool> {
    if vs.status.as_ref() == Some(&status) {
        return Ok(false);
    }
    let body = json!({
        "apiVersion": "vaultsync.dev/v1alpha1",
        "kind": "VaultSecret",
        "status": status,
    });
    api.patch_status(
        &vs.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(Error::kube("write status"))?;
    Ok(true)
}

impl Context {
    pub(in crate::controller) fn vs_api(&self, vs: &VaultSecret) -> Api<VaultSecret> {
        Api::namespaced(self.client.clone(), &vs.namespace().unwrap_or_default())
    }

    /// Publishes an Event about `vs`; a failure to publish is logged, never fatal.
    pub(in crate::controller) async fn publish(&self, vs: &VaultSecret, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Sync".into(),
            secondary: None,
        };
        self.recorder.publish(&event, &vs.object_ref(&())).await;
    }
}

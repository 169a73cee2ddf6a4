//! Metrics about syncs, kept next to the controller so reconcile stays readable.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use super::Context;
use super::secret::Desired;
use crate::api::VaultSecret;

impl Context {
    /// Records a successful sync of `vs` that took `elapsed`.
    pub(super) fn observe_success(&self, vs: &VaultSecret, elapsed: Duration) {
        let (ns, name) = (vs.namespace().unwrap_or_default(), vs.name_any());
        self.metrics.syncs.with_label_values(&["success"]).inc();
        self.metrics.sync_duration.observe(elapsed.as_secs_f64());
        self.metrics.secret_ready.with_label_values(&[&ns, &name]).set(1);
        let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
        self.metrics
            .secret_last_success
            .with_label_values(&[&ns, &name])
            .set(now);
        self.metrics.managed_secrets.set(self.secrets.state().len() as i64);
    }

    /// Records a failed sync of `vs`.
    pub(super) fn observe_failure(&self, vs: &VaultSecret, elapsed: Duration) {
        let (ns, name) = (vs.namespace().unwrap_or_default(), vs.name_any());
        self.metrics.syncs.with_label_values(&["error"]).inc();
        self.metrics.sync_duration.observe(elapsed.as_secs_f64());
        self.metrics.secret_ready.with_label_values(&[&ns, &name]).set(0);
    }

    /// Publishes when the earliest lease or certificate of `vs` expires (no series without one).
    pub(super) fn observe_expiry(&self, vs: &VaultSecret, expiry: Option<jiff::Timestamp>) {
        let (ns, name) = (vs.namespace().unwrap_or_default(), vs.name_any());
        match expiry {
            Some(at) => self
                .metrics
                .secret_expiry
                .with_label_values(&[&ns, &name])
                .set(at.as_millisecond() as f64 / 1000.0),
            None => {
                let _ = self.metrics.secret_expiry.remove_label_values(&[&ns, &name]);
            }
        }
    }

    /// Records a content change written to the Secret of `vs`.
    pub(super) fn observe_rotation(&self, vs: &VaultSecret, reason: &str) {
        let (ns, name) = (vs.namespace().unwrap_or_default(), vs.name_any());
        self.metrics.rotations.with_label_values(&[&ns, &name, reason]).inc();
    }
}

/// Why writing `desired` changes the Secret's content: `created`, `changed` (the sources changed
/// since the last sync) or `restored` (someone changed the Secret); `None` when only metadata
/// changes.
pub(super) fn rotation_reason(existing: Option<&Secret>, desired: &Desired, vs: &VaultSecret) -> Option<&'static str> {
    let Some(existing) = existing else {
        return Some("created");
    };
    if existing.data == desired.secret.data {
        return None;
    }
    let last_hash = vs.status.as_ref().and_then(|s| s.secret_hash.as_deref());
    if last_hash == Some(desired.data_hash.as_str()) {
        Some("restored")
    } else {
        Some("changed")
    }
}

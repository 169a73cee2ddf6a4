//! Metrics about syncs, kept next to the controller so reconcile stays readable.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use super::super::Context;
use super::super::destination::Desired;
use crate::api::VaultSecret;
use crate::reasons;

impl Context {
    /// Records a successful sync of `vs` that took `elapsed`.
    pub(in crate::controller) fn observe_success(&self, vs: &VaultSecret, elapsed: Duration) {
        let (ns, name) = (vs.namespace().unwrap_or_default(), vs.name_any());
        self.metrics
            .syncs
            .with_label_values(&["success", reasons::SYNCED.name])
            .inc();
        self.metrics.sync_duration.observe(elapsed.as_secs_f64());
        self.metrics.objects.set_ready(&ns, &name, true);
        let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
        self.metrics.objects.set_last_success(&ns, &name, now);
        self.metrics.managed_secrets.set(self.secrets.len() as i64);
    }

    /// Records a sync of `vs` that failed with `reason`.
    pub(in crate::controller) fn observe_failure(&self, vs: &VaultSecret, elapsed: Duration, reason: &str) {
        let (ns, name) = (vs.namespace().unwrap_or_default(), vs.name_any());
        self.metrics.syncs.with_label_values(&["error", reason]).inc();
        self.metrics.sync_duration.observe(elapsed.as_secs_f64());
        self.metrics.objects.set_ready(&ns, &name, false);
    }

    /// Publishes when the earliest lease or certificate of `vs` expires (no series without one).
    pub(in crate::controller) fn observe_expiry(&self, vs: &VaultSecret, expiry: Option<jiff::Timestamp>) {
        let (ns, name) = (vs.namespace().unwrap_or_default(), vs.name_any());
        let at = expiry.map(|at| at.as_millisecond() as f64 / 1000.0);
        self.metrics.objects.set_expiry(&ns, &name, at);
    }

    /// Records a content change written to the Secret of `vs`.
    pub(in crate::controller) fn observe_rotation(&self, vs: &VaultSecret, reason: &str) {
        let (ns, name) = (vs.namespace().unwrap_or_default(), vs.name_any());
        self.metrics.rotations.with_label_values(&[&ns, &name, reason]).inc();
    }
}

/// Why writing `desired` changes the Secret's content: `changed` (the sources changed since the
/// last sync) or `restored` (someone changed or deleted the Secret); `None` for the first write
/// (not a rotation) and when only metadata changes.
pub(in crate::controller) fn rotation_reason(
    existing: Option<&Secret>,
    desired: &Desired,
    vs: &VaultSecret,
) -> Option<&'static str> {
    let last_hash = vs.status.as_ref().and_then(|s| s.secret_hash.as_deref());
    let Some(existing) = existing else {
        return last_hash.map(|_| "restored");
    };
    if existing.data == desired.secret.data {
        return None;
    }
    if last_hash == Some(desired.data_hash.as_str()) {
        Some("restored")
    } else {
        Some("changed")
    }
}

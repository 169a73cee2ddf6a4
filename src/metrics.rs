//! Prometheus metrics, in a private registry served on `/metrics`.
//!
//! Labels stay bounded: a VaultSecret's namespace and name, static reasons and operation names,
//! never error text and never anything secret.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every metric vaultsync exposes.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// 1 when the VaultSecret's Secret is in sync, else 0.
    pub secret_ready: IntGaugeVec,
    /// When the VaultSecret last synced successfully (checked or written).
    pub secret_last_success: GaugeVec,
    /// When the earliest lease or certificate of the Secret expires.
    pub secret_expiry: GaugeVec,
    /// Syncs by result: `success` or `error`.
    pub syncs: IntCounterVec,
    /// Duration of one sync (Vault reads and Kubernetes writes).
    pub sync_duration: Histogram,
    /// Content changes written to a Secret, by reason (`created`, `changed`, `restored`).
    pub rotations: IntCounterVec,
    /// Lease renewals by result.
    pub lease_renewals: IntCounterVec,
    /// Lease revocations by result.
    pub lease_revocations: IntCounterVec,
    /// Leases replaced early because the token that issued them reached its max TTL first.
    pub token_limited_rotations: prometheus::IntCounter,
    /// Vault requests by operation and status (`2xx`, `4xx`, `5xx`, `error`).
    pub vault_requests: IntCounterVec,
    /// Vault request duration by operation.
    pub vault_request_duration: HistogramVec,
    /// Vault logins by result (`success`, `failure`).
    pub vault_logins: IntCounterVec,
    /// Expiry of the Vault tokens held, by identity (auth method, namespace, role — nothing secret).
    pub vault_token_expiry: GaugeVec,
    /// Workload restarts by namespace, kind and result.
    pub rollout_restarts: IntCounterVec,
    /// Secrets currently managed.
    pub managed_secrets: IntGauge,
    /// Always 1, labelled with the version.
    pub build_info: IntGaugeVec,
}

const OBJECT: &[&str] = &["namespace", "name"];

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str, labels: &[&str]| GaugeVec::new(Opts::new(name, help), labels);
        let counter = |name: &str, help: &str, labels: &[&str]| IntCounterVec::new(Opts::new(name, help), labels);
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets()), labels)
        };
        let metrics = Metrics {
            secret_ready: IntGaugeVec::new(
                Opts::new(
                    "vaultsync_secret_ready",
                    "1 when the VaultSecret's Secret is in sync with its sources, else 0",
                ),
                OBJECT,
            )?,
            secret_last_success: gauge(
                "vaultsync_secret_last_success_timestamp_seconds",
                "Unix time of the VaultSecret's last successful sync",
                OBJECT,
            )?,
            secret_expiry: gauge(
                "vaultsync_secret_expiry_timestamp_seconds",
                "Unix time when the earliest lease or certificate in the Secret expires",
                OBJECT,
            )?,
            syncs: counter("vaultsync_syncs_total", "Syncs by result (success, error)", &["result"])?,
            sync_duration: Histogram::with_opts(
                HistogramOpts::new("vaultsync_sync_duration_seconds", "Duration of one sync").buckets(buckets()),
            )?,
            rotations: counter(
                "vaultsync_rotations_total",
                "Content changes written to a Secret, by reason (created, changed, restored)",
                &["namespace", "name", "reason"],
            )?,
            lease_renewals: counter(
                "vaultsync_lease_renewals_total",
                "Lease renewals by result",
                &["result"],
            )?,
            lease_revocations: counter(
                "vaultsync_lease_revocations_total",
                "Lease revocations by result",
                &["result"],
            )?,
            token_limited_rotations: prometheus::IntCounter::new(
                "vaultsync_token_limited_rotations_total",
                "Leases replaced early because the Vault token that issued them reaches its max TTL first (give the auth role a token_period)",
            )?,
            vault_requests: counter(
                "vaultsync_vault_requests_total",
                "Vault requests by operation and status class (2xx, 4xx, 5xx, error)",
                &["operation", "status"],
            )?,
            vault_request_duration: histogram(
                "vaultsync_vault_request_duration_seconds",
                "Duration of Vault requests by operation",
                &["operation"],
            )?,
            vault_logins: counter("vaultsync_vault_logins_total", "Vault logins by result", &["result"])?,
            vault_token_expiry: gauge(
                "vaultsync_vault_token_expiry_timestamp_seconds",
                "Unix time when a Vault token the operator holds expires, by identity",
                &["identity"],
            )?,
            rollout_restarts: counter(
                "vaultsync_rollout_restarts_total",
                "Workload restarts triggered by Secret rotations",
                &["namespace", "kind", "result"],
            )?,
            managed_secrets: IntGauge::new("vaultsync_managed_secrets", "Secrets currently managed by vaultsync")?,
            build_info: IntGaugeVec::new(
                Opts::new("vaultsync_build_info", "Always 1; the version label"),
                &["version"],
            )?,
            registry,
        };
        metrics.register()?;
        metrics
            .build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Ok(metrics)
    }

    fn register(&self) -> Result<(), prometheus::Error> {
        let r = &self.registry;
        r.register(Box::new(self.secret_ready.clone()))?;
        r.register(Box::new(self.secret_last_success.clone()))?;
        r.register(Box::new(self.secret_expiry.clone()))?;
        r.register(Box::new(self.syncs.clone()))?;
        r.register(Box::new(self.sync_duration.clone()))?;
        r.register(Box::new(self.rotations.clone()))?;
        r.register(Box::new(self.lease_renewals.clone()))?;
        r.register(Box::new(self.lease_revocations.clone()))?;
        r.register(Box::new(self.token_limited_rotations.clone()))?;
        r.register(Box::new(self.vault_requests.clone()))?;
        r.register(Box::new(self.vault_request_duration.clone()))?;
        r.register(Box::new(self.vault_logins.clone()))?;
        r.register(Box::new(self.vault_token_expiry.clone()))?;
        r.register(Box::new(self.rollout_restarts.clone()))?;
        r.register(Box::new(self.managed_secrets.clone()))?;
        r.register(Box::new(self.build_info.clone()))
    }

    /// Removes every series of a deleted VaultSecret.
    pub fn forget(&self, namespace: &str, name: &str) {
        let _ = self.secret_ready.remove_label_values(&[namespace, name]);
        let _ = self.secret_last_success.remove_label_values(&[namespace, name]);
        let _ = self.secret_expiry.remove_label_values(&[namespace, name]);
        for reason in ["created", "changed", "restored"] {
            let _ = self.rotations.remove_label_values(&[namespace, name, reason]);
        }
    }

    /// The registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if TextEncoder::new().encode(&self.registry.gather(), &mut out).is_err() {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// Names of every metric family registered (for docs checks).
    pub fn names(&self) -> Vec<String> {
        self.registry.gather().iter().map(|f| f.name().to_owned()).collect()
    }
}

/// Histogram buckets in seconds, from 5 ms (a cached read) to 30 s (a timed-out request).
fn buckets() -> Vec<f64> {
    vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_metrics_md_lists_exactly_the_registered_metrics() {
        let m = Metrics::new().unwrap();
        // Families without a series are not gathered: give every vector one.
        m.secret_ready.with_label_values(&["ns", "n"]).set(1);
        m.secret_last_success.with_label_values(&["ns", "n"]).set(1.0);
        m.secret_expiry.with_label_values(&["ns", "n"]).set(1.0);
        m.syncs.with_label_values(&["success"]).inc();
        m.sync_duration.observe(0.1);
        m.rotations.with_label_values(&["ns", "n", "created"]).inc();
        m.lease_renewals.with_label_values(&["success"]).inc();
        m.lease_revocations.with_label_values(&["success"]).inc();
        m.vault_requests.with_label_values(&["read", "2xx"]).inc();
        m.vault_request_duration.with_label_values(&["read"]).observe(0.1);
        m.vault_logins.with_label_values(&["success"]).inc();
        m.vault_token_expiry.with_label_values(&["operator"]).set(1.0);
        m.rollout_restarts
            .with_label_values(&["ns", "Deployment", "success"])
            .inc();
        let mut registered = m.names();
        registered.sort();

        let docs = include_str!("../docs/metrics.md");
        let mut documented: Vec<String> = docs
            .lines()
            .filter_map(|l| l.strip_prefix("| `vaultsync_"))
            .filter_map(|l| l.split('`').next())
            .map(|rest| format!("vaultsync_{rest}"))
            .collect();
        documented.sort();
        assert_eq!(documented, registered);
    }

    #[test]
    fn a_deleted_vaultsecrets_series_are_removed() {
        let m = Metrics::new().unwrap();
        m.secret_ready.with_label_values(&["ns", "gone"]).set(1);
        m.rotations.with_label_values(&["ns", "gone", "changed"]).inc();
        m.secret_ready.with_label_values(&["ns", "kept"]).set(1);
        m.forget("ns", "gone");
        let text = m.render();
        assert!(!text.contains("name=\"gone\""), "{text}");
        assert!(text.contains("name=\"kept\""));
    }
}

//! Prometheus metrics, in a private registry served on `/metrics`.
//!
//! Labels stay bounded: a VaultSecret's namespace and name, static reasons and operation names,
//! never error text and never anything secret.

mod objects;

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub use objects::ObjectGauges;

/// Every metric vaultsync exposes.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Per VaultSecret: in sync or not, the last successful sync (checked or written), and when
    /// the earliest lease or certificate of its Secret expires.
    pub objects: ObjectGauges,
    /// Syncs by result: `success` or `error`.
    pub syncs: IntCounterVec,
    /// Duration of one sync (Vault reads and Kubernetes writes).
    pub sync_duration: Histogram,
    /// Content changes written to an existing Secret, by reason (`changed`, `restored`).
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
            objects: ObjectGauges::new()?,
            syncs: counter(
                "vaultsync_syncs_total",
                "Syncs by result (success, error) and Ready reason",
                &["result", "reason"],
            )?,
            sync_duration: Histogram::with_opts(
                HistogramOpts::new("vaultsync_sync_duration_seconds", "Duration of one sync").buckets(buckets()),
            )?,
            rotations: counter(
                "vaultsync_rotations_total",
                "Content changes written to an existing Secret, by reason (changed, restored)",
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
        r.register(Box::new(self.objects.clone()))?;
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
        self.objects.forget(namespace, name);
        for reason in ["changed", "restored"] {
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
        m.objects.set_ready("ns", "n", true);
        m.objects.set_last_success("ns", "n", 1.0);
        m.objects.set_expiry("ns", "n", Some(1.0));
        m.syncs.with_label_values(&["success", "Synced"]).inc();
        m.sync_duration.observe(0.1);
        m.rotations.with_label_values(&["ns", "n", "changed"]).inc();
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

        let docs = include_str!("../../docs/metrics.md");
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
        m.objects.set_ready("ns", "gone", true);
        m.objects.set_expiry("ns", "gone", Some(2e9));
        m.rotations.with_label_values(&["ns", "gone", "changed"]).inc();
        m.objects.set_ready("ns", "kept", true);
        m.forget("ns", "gone");
        let text = m.render();
        assert!(!text.contains("name=\"gone\""), "{text}");
        assert!(text.contains("name=\"kept\""));
    }

    #[test]
    fn per_vaultsecret_gauges_render_like_labelled_gauges() {
        let m = Metrics::new().unwrap();
        m.objects.set_ready("team-b", "db", false);
        m.objects.set_ready("team-a", "api", true);
        m.objects.set_last_success("team-a", "api", 1.8e9);
        // No expiry series for an object without leases, and none after it is cleared.
        m.objects.set_expiry("team-b", "db", Some(1.9e9));
        m.objects.set_expiry("team-b", "db", None);
        m.objects.set_expiry("team-c", "none", None);
        let text = m.render();
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("vaultsync_secret_")).collect();
        assert_eq!(
            lines,
            [
                "vaultsync_secret_last_success_timestamp_seconds{name=\"api\",namespace=\"team-a\"} 1800000000",
                "vaultsync_secret_ready{name=\"api\",namespace=\"team-a\"} 1",
                "vaultsync_secret_ready{name=\"db\",namespace=\"team-b\"} 0",
            ]
        );
        assert!(text.contains("# TYPE vaultsync_secret_ready gauge"), "{text}");
        assert!(!text.contains("vaultsync_secret_expiry"), "{text}");
    }
}

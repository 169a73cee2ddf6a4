//! The series labelled with one VaultSecret (`namespace`, `name`): ready, last success, expiry.
//!
//! A `prometheus` vector keeps each series as its own labelled metric, about 470 bytes each; three
//! per VaultSecret held 14 MiB at 10,000 (heaptrack, `docs/benchmarks.md`). Here each VaultSecret
//! is one small entry, and the families are built only when `/metrics` is scraped.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};

/// The values of one VaultSecret; `None` = no series.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Values {
    ready: Option<bool>,
    last_success: Option<f64>,
    expiry: Option<f64>,
}

/// Per-VaultSecret gauges, registered as one collector.
#[derive(Clone)]
pub struct ObjectGauges {
    objects: Arc<Mutex<HashMap<(String, String), Values>>>,
    descs: Arc<[Desc; 3]>,
}

const READY: (&str, &str) = (
    "vaultsync_secret_ready",
    "1 when the VaultSecret's Secret is in sync with its sources, else 0",
);
const LAST_SUCCESS: (&str, &str) = (
    "vaultsync_secret_last_success_timestamp_seconds",
    "Unix time of the VaultSecret's last successful sync",
);
const EXPIRY: (&str, &str) = (
    "vaultsync_secret_expiry_timestamp_seconds",
    "Unix time when the earliest lease or certificate in the Secret expires",
);

impl ObjectGauges {
    pub fn new() -> Result<Self, prometheus::Error> {
        let desc = |(name, help): (&str, &str)| {
            Desc::new(
                name.into(),
                help.into(),
                vec!["namespace".into(), "name".into()],
                HashMap::new(),
            )
        };
        Ok(ObjectGauges {
            objects: Arc::default(),
            descs: Arc::new([desc(READY)?, desc(LAST_SUCCESS)?, desc(EXPIRY)?]),
        })
    }

    /// `vaultsync_secret_ready`: 1 or 0.
    pub fn set_ready(&self, namespace: &str, name: &str, ready: bool) {
        self.update(namespace, name, |v| v.ready = Some(ready));
    }

    /// `vaultsync_secret_last_success_timestamp_seconds`.
    pub fn set_last_success(&self, namespace: &str, name: &str, unix_seconds: f64) {
        self.update(namespace, name, |v| v.last_success = Some(unix_seconds));
    }

    /// `vaultsync_secret_expiry_timestamp_seconds`; `None` removes the series.
    pub fn set_expiry(&self, namespace: &str, name: &str, unix_seconds: Option<f64>) {
        let mut objects = self.lock();
        match objects.get_mut(&(namespace.to_owned(), name.to_owned())) {
            Some(values) => values.expiry = unix_seconds,
            None if unix_seconds.is_some() => {
                let values = Values {
                    expiry: unix_seconds,
                    ..Values::default()
                };
                objects.insert((namespace.to_owned(), name.to_owned()), values);
            }
            None => {}
        }
    }

    /// Removes every series of the VaultSecret.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.lock().remove(&(namespace.to_owned(), name.to_owned()));
    }

    fn update(&self, namespace: &str, name: &str, change: impl FnOnce(&mut Values)) {
        let mut objects = self.lock();
        change(objects.entry((namespace.to_owned(), name.to_owned())).or_default());
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), Values>> {
        self.objects.lock()
    }
}

impl Collector for ObjectGauges {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let objects = self.lock();
        let mut entries: Vec<_> = objects.iter().collect();
        // Stable output, as the vectors give.
        entries.sort_by(|a, b| a.0.cmp(b.0));
        let family = |(name, help): (&str, &str), value: &dyn Fn(&Values) -> Option<f64>| {
            let metrics: Vec<Metric> = entries
                .iter()
                .filter_map(|((namespace, object), values)| Some(sample(namespace, object, value(values)?)))
                .collect();
            let mut family = MetricFamily::default();
            family.set_name(name.into());
            family.set_help(help.into());
            family.set_field_type(MetricType::GAUGE);
            family.set_metric(metrics);
            family
        };
        [
            family(READY, &|v| v.ready.map(|r| if r { 1.0 } else { 0.0 })),
            family(LAST_SUCCESS, &|v| v.last_success),
            family(EXPIRY, &|v| v.expiry),
        ]
        .into_iter()
        // Families without a series are left out, as the vectors do.
        .filter(|f| !f.get_metric().is_empty())
        .collect()
    }
}

fn sample(namespace: &str, name: &str, value: f64) -> Metric {
    let label = |label: &str, value: &str| {
        let mut pair = LabelPair::default();
        pair.set_name(label.into());
        pair.set_value(value.into());
        pair
    };
    let mut gauge = Gauge::default();
    gauge.set_value(value);
    let mut metric = Metric::default();
    metric.set_label(vec![label("name", name), label("namespace", namespace)]);
    metric.set_gauge(gauge);
    metric
}

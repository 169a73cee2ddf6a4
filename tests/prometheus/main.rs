//! The operator's metrics as an SRE sees them: the shipped alert rules checked and unit-tested by
//! `promtool`, and a real Prometheus (Debian's) scraping the operator pod, where PromQL shows a
//! rotation counted and a VaultSecret going unready while OpenBao is sealed.
//!
//! Its own binary (and environment): it seals OpenBao, which other tests must not see.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use xtask::prometheus::{PROMTOOL_BIN, SCRAPE_INTERVAL, query};

use common::auth::{kubernetes_role, read_policy};
use common::cluster::cluster;
use common::{TestNs, has_value};

const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/prometheus/rules.yaml");
const RULE_TESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/prometheus/rules_test.yaml");

/// Runs `promtool ARGS` in `dir`; returns its output, panics with it on failure.
fn promtool(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(PROMTOOL_BIN).current_dir(dir).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn promtool_checks_the_shipped_alert_rules_and_every_alert_has_a_firing_and_a_quiet_test() {
    let dir = std::env::temp_dir().join(format!("vaultsync-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // promtool reads plain rule files: the PrometheusRule's spec.
    let rule: Value = serde_yaml::from_str(&std::fs::read_to_string(RULES).unwrap()).unwrap();
    std::fs::write(
        dir.join("vaultsync.rules.yaml"),
        serde_yaml::to_string(&rule["spec"]).unwrap(),
    )
    .unwrap();
    std::fs::copy(RULE_TESTS, dir.join("rules_test.yaml")).unwrap();
    let checked = promtool(&dir, &["check", "rules", "vaultsync.rules.yaml"]);
    assert!(checked.contains("SUCCESS: 5 rules found"), "{checked}");
    let tested = promtool(&dir, &["test", "rules", "rules_test.yaml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");

    // Each alert has a test where it fires (exp_alerts) and one where it does not.
    let tests: Value = serde_yaml::from_str(&std::fs::read_to_string(RULE_TESTS).unwrap()).unwrap();
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap())
        .collect();
    for alert in rule["spec"]["groups"][0]["rules"].as_array().unwrap() {
        let name = alert["alert"].as_str().unwrap();
        let of_alert: Vec<_> = cases.iter().filter(|c| c["alertname"] == name).collect();
        assert!(
            of_alert
                .iter()
                .any(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty())),
            "no test where {name} fires"
        );
        assert!(
            of_alert.iter().any(|c| c["exp_alerts"].is_null()),
            "no test where {name} stays quiet"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Polls the instant query `promql` (every scrape interval, up to 60 s) until `check` accepts its
/// result; returns that result.
async fn eventually(addr: std::net::SocketAddr, promql: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let result = query(addr, promql).unwrap();
        if check(&result) {
            return result;
        }
        if started.elapsed() > Duration::from_secs(60) {
            panic!("{promql} is still {result:?} after 60 s");
        }
        tokio::time::sleep(SCRAPE_INTERVAL).await;
    }
}

/// The single sample's value of an instant vector, as a number.
fn number(result: &[Value]) -> Option<f64> {
    match result {
        [sample] => sample["value"][1].as_str()?.parse().ok(),
        _ => None,
    }
}

#[tokio::test]
async fn prometheus_scrapes_the_operator_pod_and_sees_a_rotation_and_a_sealed_openbao() {
    let op = cluster();
    let target = op.http.trim_start_matches("http://").to_owned();
    let prometheus = op.env.start_prometheus("vaultsync", &[target]).unwrap();
    eventually(prometheus, r#"up{job="vaultsync"}"#, |r| number(r) == Some(1.0)).await;

    let t = TestNs::new_in(op, "prom").await;
    read_policy(&op.bao, &t.ns, &t.ns);
    kubernetes_role(&op.bao, &t.ns, &t.ns, "app", &t.ns, &[]);
    t.create_service_account("app").await;
    op.bao.put(&t.path("app"), &[("password", "first")]);
    let spec = json!({
        "auth": {"kubernetes": {"role": t.ns, "serviceAccountName": "app"}},
        "sources": [{"kv": {"mount": "secret", "path": t.path("app")}}],
        "refresh": {"interval": "10s"},
    });
    t.create_vs("app", spec).await.expect("create VaultSecret");
    t.wait_ready("app", "True", "Synced").await;
    let ready = format!(r#"vaultsync_secret_ready{{namespace="{}", name="app"}}"#, t.ns);
    eventually(prometheus, &ready, |r| number(r) == Some(1.0)).await;

    // A rotation: counted once as `changed`.
    let rotations = format!(
        r#"sum(vaultsync_rotations_total{{namespace="{}", name="app", reason="changed"}}) or vector(0)"#,
        t.ns
    );
    assert_eq!(
        number(&query(prometheus, &rotations).unwrap()),
        Some(0.0),
        "no rotation yet"
    );
    op.bao.put(&t.path("app"), &[("password", "second")]);
    t.wait_secret("app", "the rotated value", has_value("password", "second"))
        .await;
    eventually(prometheus, &rotations, |r| number(r) == Some(1.0)).await;

    // OpenBao sealed: the next refresh fails, the gauge drops to 0; unsealed, it comes back.
    op.env.seal_openbao().unwrap();
    let sealed = async {
        eventually(prometheus, &ready, |r| number(r) == Some(0.0)).await;
        t.wait_ready("app", "False", "VaultUnavailable").await;
    };
    let result = tokio::time::timeout(Duration::from_secs(90), sealed).await;
    op.env.unseal_openbao().unwrap();
    result.expect("the VaultSecret went unready while OpenBao was sealed");
    eventually(prometheus, &ready, |r| number(r) == Some(1.0)).await;
}

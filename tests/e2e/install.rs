//! The install manifests in `config/` are accepted by the real API server, and the operator's
//! ServiceAccount can do its job under their RBAC, and nothing more ([`access`], [`identity`]).

// The helpers below are test code too: failing loudly is the point.
#![allow(clippy::expect_used)]

mod access;
mod identity;

use std::path::Path;
use std::sync::OnceLock;

use serde_yaml::Value;

use crate::common::{Operator, TestNs, operator};

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
/// Where `config/default` installs the operator (the e2e environment has this namespace).
const OPERATOR_NS: &str = "vaultsync-system";
/// The operator's ServiceAccount in `config/rbac`, as the API server names it.
const OPERATOR_USER: &str = "system:serviceaccount:vaultsync-system:vaultsync";

/// Runs kubectl against the test API server; returns stdout, panics with stderr on failure.
fn kubectl(op: &Operator, args: &[&str]) -> String {
    crate::common::kubectl(op.env, args)
}

/// `kubectl apply --dry-run=server -k config/<dir>`: the API server validates and admits every
/// object without storing it. Returns kubectl's list of objects.
fn dry_run(op: &Operator, dir: &str) -> String {
    let path = format!("{CONFIG}/{dir}");
    let out = op
        .env
        .kubectl()
        .args(["apply", "--dry-run=server", "-k", &path])
        .output()
        .expect("run kubectl");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.is_empty(),
        "kubectl apply -k config/{dir}: {err}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_lists(out: &str, objects: &[&str]) {
    for object in objects {
        assert!(out.contains(object), "{object} missing from: {out}");
    }
}

#[tokio::test]
async fn the_default_install_passes_server_side_validation() {
    let out = dry_run(operator(), "default");
    assert_lists(
        &out,
        &[
            "namespace/vaultsync-system",
            "customresourcedefinition.apiextensions.k8s.io/vaultsecrets.vaultsync.dev",
            "clusterrole.rbac.authorization.k8s.io/vaultsync-edit",
            "clusterrole.rbac.authorization.k8s.io/vaultsync-view",
            "serviceaccount/vaultsync",
            "clusterrole.rbac.authorization.k8s.io/vaultsync",
            "clusterrolebinding.rbac.authorization.k8s.io/vaultsync",
            "role.rbac.authorization.k8s.io/vaultsync-leader-election",
            "service/vaultsync",
            "deployment.apps/vaultsync",
            "poddisruptionbudget.policy/vaultsync",
        ],
    );
}

#[tokio::test]
async fn the_namespaced_install_passes_server_side_validation_without_cluster_roles() {
    // The namespace config/namespaced names must exist: a single-namespace install goes into
    // a namespace someone else created.
    let t = TestNs::fixed_in(operator(), "team-a").await;
    let out = dry_run(t.op, "namespaced");
    assert_lists(
        &out,
        &[
            "serviceaccount/vaultsync",
            "role.rbac.authorization.k8s.io/vaultsync",
            "rolebinding.rbac.authorization.k8s.io/vaultsync",
            "role.rbac.authorization.k8s.io/vaultsync-leader-election",
            "service/vaultsync",
            "deployment.apps/vaultsync",
            "poddisruptionbudget.policy/vaultsync",
        ],
    );
    assert!(!out.contains("clusterrole"), "no cluster-wide grant: {out}");
}

#[tokio::test]
async fn the_prometheus_manifests_pass_server_side_validation() {
    let op = operator();
    // Stand-ins for the Prometheus Operator's CRDs (a cluster with it installed has the real ones).
    kubectl(
        op,
        &["apply", "-f", &format!("{FIXTURES}/prometheus-operator-crds.yaml")],
    );
    kubectl(
        op,
        &[
            "wait",
            "--for=condition=established",
            "--timeout=60s",
            "crd/servicemonitors.monitoring.coreos.com",
            "crd/prometheusrules.monitoring.coreos.com",
        ],
    );
    let out = dry_run(op, "prometheus");
    assert_lists(
        &out,
        &[
            "servicemonitor.monitoring.coreos.com/vaultsync",
            "prometheusrule.monitoring.coreos.com/vaultsync",
        ],
    );
}

#[tokio::test]
async fn every_example_passes_server_side_validation() {
    let env = operator().env;
    // The examples live in namespace `shop`. (tests/cluster/examples.rs applies them for real and
    // waits for Ready; this also admits the Deployments that test cannot run.)
    let out = env
        .kubectl()
        .args(["create", "namespace", "shop"])
        .output()
        .expect("run kubectl");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || err.contains("AlreadyExists"),
        "create namespace shop: {err}"
    );
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("examples/")
        .map(|e| e.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "examples: {files:?}");
    for file in files {
        let out = env
            .kubectl()
            .args(["apply", "--dry-run=server", "-f"])
            .arg(&file)
            .output()
            .expect("run kubectl");
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The YAML documents of `config/<file>`.
fn documents(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(format!("{CONFIG}/{file}")).expect("read manifest");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .collect()
}

fn document<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn the_namespaced_role_grants_exactly_what_the_cluster_role_grants() {
    let cluster = documents("rbac/role.yaml");
    let namespaced = documents("namespaced/role.yaml");
    assert!(
        document(&namespaced, "Role")["rules"] == document(&cluster, "ClusterRole")["rules"],
        "config/namespaced/role.yaml must grant the rules of config/rbac/role.yaml, no more, no less"
    );
}

#[test]
fn the_alerts_use_documented_metrics_and_the_monitor_finds_the_service() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md")).expect("metrics.md");
    let rules = documents("prometheus/rules.yaml");
    let rules = document(&rules, "PrometheusRule")["spec"]["groups"][0]["rules"]
        .as_sequence()
        .expect("rules")
        .clone();
    assert!(rules.len() >= 4, "{rules:?}");
    for rule in &rules {
        let alert = rule["alert"].as_str().expect("alert name");
        let expr = rule["expr"].as_str().expect("expr");
        assert!(rule["labels"]["severity"].is_string(), "{alert}: severity");
        assert!(rule["annotations"]["summary"].is_string(), "{alert}: summary");
        for name in expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("vaultsync_"))
        {
            assert!(
                docs.contains(&format!("`{name}`")),
                "{alert} uses {name}, which docs/metrics.md does not list"
            );
        }
    }
    let expr = |alert: &str| {
        rules
            .iter()
            .find(|r| r["alert"] == alert)
            .and_then(|r| r["expr"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(expr("VaultsyncSecretNotReady").contains("vaultsync_secret_ready == 0"));
    assert!(expr("VaultsyncLeaseExpiringSoon").contains("vaultsync_secret_expiry_timestamp_seconds - time() < 3600"));
    // The rollout result label is `restarted`, `unchanged` or a failure reason (src/rollout).
    assert!(expr("VaultsyncRolloutFailing").contains(r#"result!~"restarted|unchanged"#));

    let service = documents("manager/service.yaml");
    let service = document(&service, "Service");
    let monitor = documents("prometheus/service_monitor.yaml");
    let monitor = &document(&monitor, "ServiceMonitor")["spec"];
    let labels = monitor["selector"]["matchLabels"].as_mapping().expect("matchLabels");
    for (k, v) in labels {
        assert_eq!(
            &service["metadata"]["labels"][k], v,
            "the Service carries the selected label {k:?}"
        );
    }
    let deployment = documents("manager/deployment.yaml");
    let pod_labels = &document(&deployment, "Deployment")["spec"]["template"]["metadata"]["labels"];
    for (k, v) in service["spec"]["selector"].as_mapping().expect("selector") {
        assert_eq!(
            &pod_labels[k], v,
            "the operator's pods carry the Service's selector {k:?}"
        );
    }
    let port = &monitor["endpoints"][0]["port"];
    let ports = service["spec"]["ports"].as_sequence().expect("ports");
    assert!(
        ports.iter().any(|p| &p["name"] == port && p["port"] == 8080),
        "Service port {port:?}: {ports:?}"
    );
}

/// Applies `config/rbac` for real, once per test binary.
fn install_rbac(op: &Operator) {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        kubectl(op, &["apply", "-k", &format!("{CONFIG}/rbac")]);
    });
}

/// Applies `config/namespaced` for real into `t`'s namespace, through an overlay as a user would.
fn install_namespaced(t: &TestNs) {
    let overlay = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("namespaced-{}", t.ns));
    std::fs::create_dir_all(&overlay).expect("overlay directory");
    // kustomize refuses an absolute path to a base, hence the relative one.
    let up = "../".repeat(overlay.components().count() - 1);
    let base = format!("{up}{}", CONFIG.trim_start_matches('/'));
    let kustomization = format!("namespace: {}\nresources:\n  - {base}/namespaced\n", t.ns);
    std::fs::write(overlay.join("kustomization.yaml"), kustomization).expect("write overlay");
    kubectl(t.op, &["apply", "-k", overlay.to_str().expect("path")]);
    std::fs::remove_dir_all(&overlay).ok();
}

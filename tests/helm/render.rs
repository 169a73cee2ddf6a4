//! What the chart renders, compared with what `kubectl kustomize` builds from `config/`.

use std::collections::BTreeMap;
use std::fs;

use serde::Deserialize;
use serde_json::Value;

use crate::run_helm;

/// Labels only Helm's objects carry; the comparison drops them on both sides.
const HELM_LABELS: [&str; 4] = [
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
];

/// `helm template vaultsync charts/vaultsync` with `args`, which must succeed.
fn template(args: &[&str]) -> String {
    let mut all = vec!["template", "vaultsync", "charts/vaultsync"];
    all.extend_from_slice(args);
    let (ok, stdout, stderr) = run_helm(&all);
    assert!(ok, "helm {all:?}: {stderr}");
    stdout
}

/// `kubectl kustomize config/<dir>`.
fn kustomize(dir: &str) -> String {
    let bins = xtask::Binaries::ensure().expect("the environment's binaries");
    let out = std::process::Command::new(&bins.kubectl)
        .arg("kustomize")
        .arg(xtask::workspace_root().join("config").join(dir))
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize config/{dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The objects of a YAML stream by `Kind namespace/name`, without Helm's labels anywhere (and
/// without the `app.kubernetes.io/name` label on an object's own metadata, which only the chart
/// puts on every object), empty label maps removed.
fn objects(yaml: &str) -> BTreeMap<String, Value> {
    let mut objects = BTreeMap::new();
    for document in serde_yaml::Deserializer::from_str(yaml) {
        let mut object: Value = Value::deserialize(document).expect("valid YAML");
        if object.is_null() {
            continue;
        }
        strip(&mut object);
        let metadata = &mut object["metadata"];
        if let Some(labels) = metadata.get_mut("labels").and_then(Value::as_object_mut) {
            labels.remove("app.kubernetes.io/name");
            if labels.is_empty() {
                metadata.as_object_mut().unwrap().remove("labels");
            }
        }
        let key = format!(
            "{} {}/{}",
            object["kind"].as_str().unwrap_or("?"),
            object["metadata"]["namespace"].as_str().unwrap_or(""),
            object["metadata"]["name"].as_str().unwrap_or("?")
        );
        assert!(objects.insert(key.clone(), object).is_none(), "{key} twice");
    }
    objects
}

/// Drops Helm's labels, sorts `env` lists by name (kustomize prepends a patched variable, Helm
/// renders it where the template says; the order has no meaning without `$(VAR)` references) and
/// writes whole floats as integers (kustomize turns the CRD's `600.0` into `600`).
fn strip(value: &mut Value) {
    match value {
        Value::Object(map) => {
            HELM_LABELS.iter().for_each(|label| {
                map.remove(*label);
            });
            if let Some(Value::Array(env)) = map.get_mut("env") {
                env.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            }
            map.values_mut().for_each(strip);
        }
        Value::Array(items) => items.iter_mut().for_each(strip),
        Value::Number(n) => {
            if let Some(whole) = n.as_f64().filter(|f| f.fract() == 0.0 && !n.is_i64() && !n.is_u64()) {
                *value = Value::from(whole as i64);
            }
        }
        _ => {}
    }
}

/// Fails with every object that differs, is missing or is extra, as YAML.
fn assert_same(chart: &BTreeMap<String, Value>, config: &BTreeMap<String, Value>, what: &str) {
    let mut differences = Vec::new();
    for key in chart
        .keys()
        .chain(config.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        match (chart.get(key), config.get(key)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => differences.push(format!(
                "{key}\n--- chart:\n{}--- config:\n{}",
                a.map(|v| serde_yaml::to_string(v).unwrap())
                    .unwrap_or("(none)\n".into()),
                b.map(|v| serde_yaml::to_string(v).unwrap())
                    .unwrap_or("(none)\n".into()),
            )),
        }
    }
    assert!(differences.is_empty(), "{what}:\n{}", differences.join("\n"));
}

#[test]
fn the_chart_lints_clean_in_strict_mode() {
    let (ok, stdout, stderr) = run_helm(&["lint", "--strict", "charts/vaultsync"]);
    assert!(ok, "helm lint --strict:\n{stdout}{stderr}");
}

#[test]
fn with_its_defaults_the_chart_renders_what_config_default_applies() {
    let chart = objects(&template(&["--namespace", "vaultsync-system", "--include-crds"]));
    let mut config = objects(&kustomize("default"));
    // Helm does not own the release namespace (`--create-namespace` makes a plain one).
    assert!(config.remove("Namespace /vaultsync-system").is_some());
    assert_same(&chart, &config, "charts/vaultsync and config/default differ");
}

#[test]
fn scope_namespace_renders_what_config_namespaced_applies() {
    let chart = objects(&template(&[
        "--namespace",
        "team-a",
        "--set",
        "scope=namespace",
        // config/namespaced leaves the CRD and its aggregated roles to the cluster administrator.
        "--set",
        "rbac.aggregateToDefaultRoles=false",
    ]));
    let config = objects(&kustomize("namespaced"));
    assert_same(
        &chart,
        &config,
        "charts/vaultsync (scope: namespace) and config/namespaced differ",
    );
}

#[test]
fn the_prometheus_toggles_render_what_config_prometheus_applies() {
    let chart = objects(&template(&[
        "--namespace",
        "vaultsync-system",
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "prometheusRule.enabled=true",
        "--show-only",
        "templates/servicemonitor.yaml",
        "--show-only",
        "templates/prometheusrule.yaml",
    ]));
    let config = objects(&kustomize("prometheus"));
    assert_same(
        &chart,
        &config,
        "charts/vaultsync's Prometheus objects and config/prometheus differ",
    );
}

#[test]
fn the_chart_carries_the_operators_version_and_crd() {
    let root = xtask::workspace_root();
    let chart: Value =
        serde_yaml::from_str(&fs::read_to_string(root.join("charts/vaultsync/Chart.yaml")).unwrap()).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(chart["version"], version, "Chart.yaml version");
    assert_eq!(chart["appVersion"], version, "Chart.yaml appVersion");
    assert_eq!(
        fs::read_to_string(root.join("charts/vaultsync/crds/vaultsecret.yaml")).unwrap(),
        fs::read_to_string(root.join("crds/vaultsecret.yaml")).unwrap(),
        "charts/vaultsync/crds/vaultsecret.yaml is a copy of crds/vaultsecret.yaml: copy it again"
    );
}

#[test]
fn values_outside_the_schema_are_refused_naming_the_value() {
    for (set, named) in [
        ("replicaCount=0", "/replicaCount"),
        ("imagee.tag=v1", "imagee"),
        ("scope=everywhere", "/scope"),
        ("vault.address=https://user:secret@vault.example", "/vault/address"),
        (
            "settings.defaultRefreshInterval=hourly",
            "/settings/defaultRefreshInterval",
        ),
        ("settings.concurrency=0", "/settings/concurrency"),
        ("watchNamespaces={a,a}", "/watchNamespaces"),
    ] {
        let (ok, _, stderr) = run_helm(&["template", "vaultsync", "charts/vaultsync", "--set", set]);
        assert!(!ok, "--set {set} was accepted");
        assert!(
            stderr.contains(named),
            "--set {set}: the error does not name {named}: {stderr}"
        );
    }
}

#[test]
fn watch_namespaces_limit_a_cluster_wide_install_and_conflict_with_scope_namespace() {
    let deployment = template(&[
        "--set",
        "watchNamespaces={team-b,team-c}",
        "--show-only",
        "templates/deployment.yaml",
    ]);
    let deployment: Value = serde_yaml::from_str(&deployment).unwrap();
    let env = &deployment["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "VAULTSYNC_WATCH_NAMESPACES" && e["value"] == "team-b,team-c"),
        "{env}"
    );
    let (ok, _, stderr) = run_helm(&[
        "template",
        "vaultsync",
        "charts/vaultsync",
        "--set",
        "scope=namespace",
        "--set",
        "watchNamespaces={team-b}",
    ]);
    assert!(
        !ok && stderr.contains("watchNamespaces applies to scope: cluster"),
        "{stderr}"
    );
}

//! The install manifests in `config/` are accepted by the real API server, and the operator's
//! ServiceAccount can do its job under their RBAC, and nothing more.

// The helpers below are test code too: failing loudly is the point.
#![allow(clippy::expect_used)]

use std::path::Path;
use std::sync::OnceLock;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use serde_yaml::Value;
use vaultsync::api::VaultSecret;
use vaultsync::hash::HashKey;
use vaultsync::leader::LeaderElection;

use crate::common::{Operator, TestNs, operator, within};

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
/// Where `config/default` installs the operator (the e2e environment has this namespace).
const OPERATOR_NS: &str = "vaultsync-system";
/// The operator's ServiceAccount in `config/rbac`, as the API server names it.
const OPERATOR_USER: &str = "system:serviceaccount:vaultsync-system:vaultsync";

/// Runs kubectl against the test API server; returns stdout, panics with stderr on failure.
fn kubectl(op: &Operator, args: &[&str]) -> String {
    let out = op.env.kubectl().args(args).output().expect("run kubectl");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "kubectl {args:?}: {stderr}");
    stdout.into_owned()
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
            "serviceaccount/vaultsync",
            "clusterrole.rbac.authorization.k8s.io/vaultsync",
            "clusterrolebinding.rbac.authorization.k8s.io/vaultsync",
            "role.rbac.authorization.k8s.io/vaultsync-leader-election",
            "service/vaultsync",
            "deployment.apps/vaultsync",
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
    // The examples live in namespaces `shop` and `default`.
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

/// Where an access check applies: a namespace, or every namespace (and cluster-scoped objects).
#[derive(Clone, Copy)]
enum At<'a> {
    Ns(&'a str),
    Everywhere,
}

/// Whether the API server's authorizer lets ServiceAccount `user` (`system:serviceaccount:NS:NAME`)
/// `verb` `resource` (`plural[.group][/subresource]`): a SubjectAccessReview with the groups the
/// API server gives that ServiceAccount's tokens. Unlike `kubectl auth can-i`, it needs no
/// discovery, so it also answers for kinds the cluster does not serve (Argo Rollouts).
async fn can_i(client: &Client, user: &str, verb: &str, resource: &str, at: At<'_>) -> bool {
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_owned())),
        None => (resource, None),
    };
    let (resource, group) = resource.split_once('.').unwrap_or((resource, ""));
    let sa_namespace = user.split(':').nth(2).expect("a ServiceAccount's user name");
    let groups = [
        "system:serviceaccounts",
        &format!("system:serviceaccounts:{sa_namespace}"),
        "system:authenticated",
    ];
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_owned()),
            groups: Some(groups.iter().map(|g| (*g).to_owned()).collect()),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.to_owned()),
                group: Some(group.to_owned()),
                resource: Some(resource.to_owned()),
                subresource,
                namespace: match at {
                    At::Ns(ns) => Some(ns.to_owned()),
                    At::Everywhere => None,
                },
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("SubjectAccessReview");
    answer.status.is_some_and(|s| s.allowed)
}

/// Checks every `(verb, resource, where)` against `allowed`, and panics listing all mismatches.
/// The first check is retried until RBAC has caught up with a fresh binding.
async fn assert_access(client: &Client, user: &str, allowed: bool, checks: &[(&str, &str, At<'_>)]) {
    if allowed && let Some((verb, resource, at)) = checks.first() {
        within(&format!("{user} may {verb} {resource}"), async {
            while !can_i(client, user, verb, resource, *at).await {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        })
        .await;
    }
    let mut wrong = Vec::new();
    for (verb, resource, at) in checks {
        if can_i(client, user, verb, resource, *at).await != allowed {
            wrong.push(match at {
                At::Ns(ns) => format!("{verb} {resource} in {ns}"),
                At::Everywhere => format!("{verb} {resource} everywhere"),
            });
        }
    }
    let can = if allowed { "cannot" } else { "can" };
    assert!(wrong.is_empty(), "{user} {can}: {}", wrong.join(", "));
}

#[tokio::test]
async fn the_operator_service_account_may_do_its_job_and_nothing_else() {
    let t = TestNs::new("rbac").await;
    install_rbac(t.op);
    let (app, own) = (At::Ns(&t.ns), At::Ns(OPERATOR_NS));
    assert_access(
        &t.client,
        OPERATOR_USER,
        true,
        &[
            ("list", "vaultsecrets.vaultsync.dev", At::Everywhere),
            ("watch", "vaultsecrets.vaultsync.dev", At::Everywhere),
            ("patch", "vaultsecrets.vaultsync.dev/status", app),
            ("list", "secrets", At::Everywhere),
            ("watch", "secrets", At::Everywhere),
            ("get", "secrets", app),
            ("create", "secrets", app),
            ("patch", "secrets", app),
            ("delete", "secrets", app),
            ("get", "serviceaccounts", app),
            ("create", "serviceaccounts/token", app),
            ("create", "events.events.k8s.io", app),
            ("patch", "events.events.k8s.io", app),
            ("get", "deployments.apps", app),
            ("list", "deployments.apps", app),
            ("patch", "deployments.apps", app),
            ("patch", "statefulsets.apps", app),
            ("patch", "daemonsets.apps", app),
            ("patch", "rollouts.argoproj.io", app),
            ("get", "leases.coordination.k8s.io", own),
            ("create", "leases.coordination.k8s.io", own),
            ("update", "leases.coordination.k8s.io", own),
        ],
    )
    .await;
    assert_access(
        &t.client,
        OPERATOR_USER,
        false,
        &[
            ("update", "vaultsecrets.vaultsync.dev", app),
            ("delete", "vaultsecrets.vaultsync.dev", app),
            ("update", "secrets", app),
            ("create", "serviceaccounts", app),
            ("impersonate", "serviceaccounts", app),
            ("create", "events", app),
            ("update", "deployments.apps", app),
            ("delete", "deployments.apps", app),
            ("list", "rollouts.argoproj.io", app),
            ("update", "leases.coordination.k8s.io", app),
            ("create", "leases.coordination.k8s.io", app),
            ("delete", "leases.coordination.k8s.io", own),
            ("get", "configmaps", app),
            ("list", "configmaps", At::Everywhere),
            ("create", "pods", app),
            ("create", "pods/exec", app),
            ("create", "clusterroles.rbac.authorization.k8s.io", At::Everywhere),
            ("create", "rolebindings.rbac.authorization.k8s.io", app),
            ("delete", "namespaces", At::Everywhere),
            ("patch", "nodes", At::Everywhere),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_namespaced_install_can_touch_nothing_outside_its_namespace() {
    let t = TestNs::new("single").await;
    let other = TestNs::new("other").await;
    // An overlay puts config/namespaced into the test's namespace, as a user's overlay would.
    // kustomize refuses an absolute path to a base, hence the relative one.
    let overlay = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("namespaced-{}", t.ns));
    std::fs::create_dir_all(&overlay).expect("overlay directory");
    let up = "../".repeat(overlay.components().count() - 1);
    let base = format!("{up}{}", CONFIG.trim_start_matches('/'));
    let kustomization = format!("namespace: {}\nresources:\n  - {base}/namespaced\n", t.ns);
    std::fs::write(overlay.join("kustomization.yaml"), kustomization).expect("write overlay");
    kubectl(t.op, &["apply", "-k", overlay.to_str().expect("path")]);
    let env = t.kubectl(&[
        "get",
        "deployment",
        "vaultsync",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].env}",
    ]);
    assert!(env.contains("VAULTSYNC_WATCH_NAMESPACES"), "{env}");

    let user = format!("system:serviceaccount:{}:vaultsync", t.ns);
    let (here, there) = (At::Ns(&t.ns), At::Ns(&other.ns));
    assert_access(
        &t.client,
        &user,
        true,
        &[
            ("list", "vaultsecrets.vaultsync.dev", here),
            ("watch", "vaultsecrets.vaultsync.dev", here),
            ("patch", "vaultsecrets.vaultsync.dev/status", here),
            ("get", "secrets", here),
            ("list", "secrets", here),
            ("create", "secrets", here),
            ("delete", "secrets", here),
            ("create", "serviceaccounts/token", here),
            ("create", "events.events.k8s.io", here),
            ("patch", "deployments.apps", here),
            ("update", "leases.coordination.k8s.io", here),
        ],
    )
    .await;
    assert_access(
        &t.client,
        &user,
        false,
        &[
            ("list", "vaultsecrets.vaultsync.dev", At::Everywhere),
            ("list", "vaultsecrets.vaultsync.dev", there),
            ("get", "secrets", there),
            ("get", "secrets", At::Ns(OPERATOR_NS)),
            ("list", "secrets", At::Everywhere),
            ("create", "secrets", there),
            ("create", "serviceaccounts/token", there),
            ("create", "events.events.k8s.io", there),
            ("patch", "deployments.apps", there),
            ("update", "leases.coordination.k8s.io", there),
            ("get", "configmaps", here),
        ],
    )
    .await;
    std::fs::remove_dir_all(&overlay).ok();
}

/// A client that authenticates as `config/rbac`'s ServiceAccount with a token from TokenRequest,
/// as the operator does in a pod.
async fn operator_identity(op: &Operator) -> Client {
    let token = kubectl(
        op,
        &["create", "token", "vaultsync", "-n", OPERATOR_NS, "--duration=10m"],
    );
    let kc = Kubeconfig::read_from(&op.env.kubeconfig).expect("read kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    config.auth_info = AuthInfo {
        token: Some(token.trim().to_owned().into()),
        ..Default::default()
    };
    Client::try_from(config).expect("kube client")
}

#[tokio::test]
async fn the_operators_own_calls_succeed_with_its_service_account_token() {
    let t = TestNs::new("identity").await;
    install_rbac(t.op);
    let client = operator_identity(t.op).await;

    // Start-up: the CRD check, then the hash key (read, or created by whoever is first).
    within("the ServiceAccount may list VaultSecrets", async {
        while Api::<VaultSecret>::all(client.clone())
            .list(&ListParams::default().limit(1))
            .await
            .is_err()
        {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    })
    .await;
    HashKey::load_or_create(client.clone(), OPERATOR_NS, "vaultsync-hash-key")
        .await
        .expect("hash key");
    // The metadata-only watch of the Secrets it wrote.
    let managed = ListParams::default().labels(&format!("{}={}", vaultsync::MANAGED_BY_LABEL, vaultsync::MANAGER));
    Api::<Secret>::all(client.clone())
        .list_metadata(&managed)
        .await
        .expect("list Secrets' metadata");

    // Leader election, under a Lease name of this test's own.
    let lease = format!("rbac-{}", t.ns);
    let election = LeaderElection::new(
        client.clone(),
        OPERATOR_NS,
        &lease,
        "rbac-test",
        std::time::Duration::from_secs(15),
    );
    within("leadership under the operator's identity", election.acquire()).await;
    election.release().await;
    let held = Api::<Lease>::namespaced(t.client.clone(), OPERATOR_NS)
        .get(&lease)
        .await
        .expect("Lease");
    assert_eq!(held.spec.and_then(|s| s.holder_identity), None, "released");
    Api::<Lease>::namespaced(t.client.clone(), OPERATOR_NS)
        .delete(&lease, &DeleteParams::default())
        .await
        .expect("delete Lease");

    // In an application namespace: a TokenRequest, a Secret written and deleted, an Event.
    let app_sa = t.create_service_account("app").await;
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec!["vault".into()],
            expiration_seconds: Some(600),
            bound_object_ref: None,
        },
        ..Default::default()
    };
    Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), &t.ns)
        .create_token_request("app", &PostParams::default(), &request)
        .await
        .expect("TokenRequest");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &t.ns);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("probe".into()),
            ..Default::default()
        },
        data: Some([("k".to_owned(), k8s_openapi::ByteString(b"v".to_vec()))].into()),
        ..Default::default()
    };
    secrets
        .patch(
            "probe",
            &PatchParams::apply("vaultsync-rbac-test"),
            &Patch::Apply(&secret),
        )
        .await
        .expect("apply Secret");
    secrets
        .delete("probe", &DeleteParams::default())
        .await
        .expect("delete Secret");
    let reporter = Reporter {
        controller: "vaultsync".into(),
        instance: Some("rbac-test".into()),
    };
    let event = Event {
        type_: EventType::Normal,
        reason: "RbacProbe".into(),
        note: Some("the operator's identity may publish Events".into()),
        action: "Probe".into(),
        secondary: None,
    };
    Recorder::new(client.clone(), reporter)
        .publish(&event, &app_sa.object_ref(&()))
        .await
        .expect("publish Event");

    // And what it may not: a ConfigMap, a Lease outside its namespace.
    let denied = |r: Result<_, kube::Error>| matches!(r, Err(kube::Error::Api(s)) if s.code == 403);
    assert!(denied(
        Api::<ConfigMap>::namespaced(client.clone(), &t.ns)
            .get("kube-root-ca.crt")
            .await
            .map(drop)
    ));
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some("elsewhere".into()),
            ..Default::default()
        },
        spec: None,
    };
    assert!(denied(
        Api::<Lease>::namespaced(client, &t.ns)
            .create(&PostParams::default(), &lease)
            .await
            .map(drop)
    ));
}

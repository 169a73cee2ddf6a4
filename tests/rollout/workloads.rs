//! Workloads for the rollout tests, and ways to count their restarts.

#![allow(dead_code)]
#![allow(clippy::expect_used)] // test support: failing loudly is the point

use std::ops::Deref;

use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Event;
use kube::Resource;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::ApiResource;
use kube::runtime::wait::await_condition;
use serde_json::{Value, json};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use vaultsync::api::VaultSecret;

use crate::common::{TestNs, has_value, within};

/// Tests that restart the operator hold this exclusively; every other test shares it, so a
/// restart never lands in the middle of another test's expectations.
static OPERATOR_LOCK: RwLock<()> = RwLock::const_new(());

/// A test namespace, held while the operator must not be restarted under it.
pub struct Ns {
    t: TestNs,
    _shared: RwLockReadGuard<'static, ()>,
}

impl Deref for Ns {
    type Target = TestNs;
    fn deref(&self) -> &TestNs {
        &self.t
    }
}

/// A fresh namespace for a test that does not restart the operator.
pub async fn ns(prefix: &str) -> Ns {
    let shared = OPERATOR_LOCK.read().await;
    Ns {
        t: TestNs::new(prefix).await,
        _shared: shared,
    }
}

/// A fresh namespace for a test that restarts the operator: waits until no other test runs.
pub async fn exclusive_ns(prefix: &str) -> (TestNs, RwLockWriteGuard<'static, ()>) {
    let guard = OPERATOR_LOCK.write().await;
    (TestNs::new(prefix).await, guard)
}

/// A VaultSecret spec reading `secret/<path>` every 10 s, with `rollout`.
pub fn spec(path: &str, rollout: Value) -> Value {
    json!({
        "sources": [{"kv": {"mount": "secret", "path": path}}],
        "refresh": {"interval": "10s"},
        "rollout": rollout,
    })
}

/// A container `app` with `uses` merged in (e.g. `{"envFrom": [...]}`).
pub fn container(uses: Value) -> Value {
    let mut c = json!({"name": "app", "image": "registry.invalid/app:1"});
    if let (Some(c), Some(uses)) = (c.as_object_mut(), uses.as_object()) {
        c.extend(uses.clone());
    }
    c
}

/// A pod spec whose only container reads every key of each Secret in `secrets` with `envFrom`.
pub fn env_from(secrets: &[&str]) -> Value {
    let refs: Vec<Value> = secrets.iter().map(|s| json!({"secretRef": {"name": s}})).collect();
    json!({"containers": [container(json!({"envFrom": refs}))]})
}

/// The workload's kind as a dynamic API resource.
pub fn resource<K: Resource<DynamicType = ()>>() -> ApiResource {
    ApiResource::erase::<K>(&())
}

/// Manifest of an `apps/v1` workload `kind` named `name` with one replica running `pod_spec`.
fn manifest(kind: &str, name: &str, pod_spec: Value, annotations: Value) -> Value {
    let mut spec = json!({
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
    });
    if kind != "DaemonSet" {
        spec["replicas"] = json!(1);
    }
    if kind == "StatefulSet" {
        spec["serviceName"] = json!(name);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "annotations": annotations},
        "spec": spec,
    })
}

/// Creates a workload of kind `K` and waits until its controller has seen it (for a
/// Deployment: its first ReplicaSet exists).
pub async fn create<K>(t: &TestNs, name: &str, pod_spec: Value, annotations: Value) -> K
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    let kind = K::kind(&()).to_string();
    let object: K = serde_json::from_value(manifest(&kind, name, pod_spec, annotations)).expect("a valid manifest");
    let api: Api<K> = Api::namespaced(t.client.clone(), &t.ns);
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create {kind} {name}: {e}"));
    let observed = wait_observed(t, &resource::<K>(), name).await;
    if kind == "Deployment" {
        within(&format!("the first ReplicaSet of {name}"), async {
            while replica_sets(t, name).await == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        })
        .await;
    }
    serde_json::from_value(serde_json::to_value(observed).expect("json")).expect("the workload")
}

fn generations(o: &DynamicObject) -> (Option<i64>, Option<i64>) {
    let observed = o.data.pointer("/status/observedGeneration").and_then(Value::as_i64);
    (o.metadata.generation, observed)
}

/// Waits until the workload's controller has observed its current generation.
pub async fn wait_observed(t: &TestNs, ar: &ApiResource, name: &str) -> DynamicObject {
    let api: Api<DynamicObject> = Api::namespaced_with(t.client.clone(), &t.ns, ar);
    let cond = |o: Option<&DynamicObject>| {
        o.is_some_and(|o| {
            let (generation, observed) = generations(o);
            generation.is_some() && generation == observed
        })
    };
    within(
        &format!("{} {name} observed by its controller", ar.kind),
        await_condition(api, name, cond),
    )
    .await
    .expect("watch workload")
    .expect("the workload exists")
}

/// Waits until the workload's pod template carries `key: value` and its controller has acted on it.
pub async fn wait_rolled(t: &TestNs, ar: &ApiResource, name: &str, key: &str, value: &str) -> DynamicObject {
    let api: Api<DynamicObject> = Api::namespaced_with(t.client.clone(), &t.ns, ar);
    let (key, value) = (key.to_owned(), value.to_owned());
    let what = format!("{} {name} annotated {key}={value} and observed", ar.kind);
    let cond = move |o: Option<&DynamicObject>| {
        o.is_some_and(|o| {
            let (generation, observed) = generations(o);
            template_annotation(o, &key).as_deref() == Some(value.as_str()) && generation == observed
        })
    };
    within(&what, await_condition(api, name, cond))
        .await
        .expect("watch workload")
        .expect("the workload exists")
}

/// The workload as it is now.
pub async fn get(t: &TestNs, ar: &ApiResource, name: &str) -> DynamicObject {
    let api: Api<DynamicObject> = Api::namespaced_with(t.client.clone(), &t.ns, ar);
    api.get(name)
        .await
        .unwrap_or_else(|e| panic!("get {} {name}: {e}", ar.kind))
}

/// A pod-template annotation of a workload.
pub fn template_annotation(o: &DynamicObject, key: &str) -> Option<String> {
    let annotations = o.data.pointer("/spec/template/metadata/annotations")?;
    annotations.get(key)?.as_str().map(str::to_owned)
}

/// Pod-template annotations vaultsync set on a workload.
pub fn vaultsync_annotations(o: &DynamicObject) -> Vec<String> {
    let annotations = o.data.pointer("/spec/template/metadata/annotations");
    let keys = annotations
        .and_then(Value::as_object)
        .map(|a| a.keys().cloned().collect::<Vec<_>>());
    keys.unwrap_or_default()
        .into_iter()
        .filter(|k| k.starts_with("vaultsync.dev/"))
        .collect()
}

/// ReplicaSets of Deployment `name`.
pub async fn replica_sets(t: &TestNs, name: &str) -> usize {
    let api: Api<ReplicaSet> = Api::namespaced(t.client.clone(), &t.ns);
    let list = api.list(&ListParams::default()).await.expect("list ReplicaSets");
    list.items.iter().filter(|rs| owned_by(*rs, "Deployment", name)).count()
}

/// ControllerRevisions of the StatefulSet or DaemonSet `name` (one per distinct pod template).
pub async fn revisions(t: &TestNs, kind: &str, name: &str) -> usize {
    let api: Api<ControllerRevision> = Api::namespaced(t.client.clone(), &t.ns);
    let list = api
        .list(&ListParams::default())
        .await
        .expect("list ControllerRevisions");
    list.items.iter().filter(|r| owned_by(*r, kind, name)).count()
}

fn owned_by(o: &impl Resource, kind: &str, name: &str) -> bool {
    o.meta()
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.kind == kind && r.name == name)
}

/// Events in the namespace with `reason`, as (kind of the object they are about, name, message).
pub async fn events(t: &TestNs, reason: &str) -> Vec<(String, String, String)> {
    let api: Api<Event> = Api::namespaced(t.client.clone(), &t.ns);
    let list = api.list(&ListParams::default()).await.expect("list Events");
    list.items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| {
            let about = e.involved_object;
            (
                about.kind.unwrap_or_default(),
                about.name.unwrap_or_default(),
                e.message.unwrap_or_default(),
            )
        })
        .collect()
}

/// Waits until the VaultSecret's `RolloutRestart` condition has `status` and `reason`.
pub async fn wait_rollout_condition(t: &TestNs, name: &str, status: &str, reason: &str) -> VaultSecret {
    let (s, r) = (status.to_owned(), reason.to_owned());
    t.wait_vs(
        name,
        &format!("{name} RolloutRestart={status} {reason}"),
        move |vs: Option<&VaultSecret>| {
            vs.and_then(|vs| vs.status.as_ref()?.rollout_restart().cloned())
                .is_some_and(|c| c.status == s && c.reason == r)
        },
    )
    .await
}

/// Waits until the VaultSecret records a content hash other than `old` and returns it.
pub async fn wait_new_hash(t: &TestNs, name: &str, old: &str) -> String {
    let old = old.to_owned();
    let vs = t
        .wait_vs(
            name,
            &format!("a new secretHash on {name}"),
            move |vs: Option<&VaultSecret>| {
                vs.and_then(|v| v.status.as_ref()?.secret_hash.clone())
                    .is_some_and(|h| h != old)
            },
        )
        .await;
    hash(&vs)
}

/// `status.secretHash`.
pub fn hash(vs: &VaultSecret) -> String {
    vs.status
        .as_ref()
        .and_then(|s| s.secret_hash.clone())
        .expect("a synced VaultSecret")
}

/// Waits until OpenBao has answered `more` further reads of `secret/<path>` (refreshes).
pub async fn wait_reads(t: &TestNs, path: &str, more: usize) {
    t.wait_reads(path, more).await;
}

/// Every ReplicaSet in the cluster, by namespace and name.
pub async fn all_replica_sets(t: &TestNs) -> Vec<(String, String)> {
    let list = Api::<ReplicaSet>::all(t.client.clone())
        .list(&ListParams::default())
        .await
        .expect("list ReplicaSets");
    let mut names: Vec<_> = list
        .items
        .iter()
        .map(|rs| {
            (
                rs.metadata.namespace.clone().unwrap_or_default(),
                rs.metadata.name.clone().unwrap_or_default(),
            )
        })
        .collect();
    names.sort();
    names
}

/// A Deployment `name` using Secret `name`, synced from `secret/<ns>/<name>` and listed as target.
pub async fn synced_target(t: &TestNs, name: &str, debounce: &str) -> String {
    let path = t.path(name);
    t.op.bao.put(&path, &[("password", "v1")]);
    create::<Deployment>(t, name, env_from(&[name]), json!({})).await;
    let rollout = json!({"targets": [{"kind": "Deployment", "name": name}], "debounce": debounce});
    t.create_vs(name, spec(&path, rollout))
        .await
        .expect("create VaultSecret");
    t.wait_secret(name, "the first sync", has_value("password", "v1")).await;
    hash(&t.wait_ready(name, "True", "Synced").await)
}

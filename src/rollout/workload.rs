//! Finding the workloads that use a Secret, and restarting one by patching its pod template.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ObjectReference, PodTemplateSpec};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Resource, ResourceExt, discovery};
use serde_json::{Value, json};

use super::annotation::opted_out;
use super::references::uses_secret;
use super::{Failure, Target, WorkloadRef};
use crate::MANAGER;
use crate::api::WorkloadKind;
use crate::reasons::rollout;

/// What patching one workload did.
pub struct Patched {
    /// Whether the pod template changed (a restart was triggered).
    pub changed: bool,
    /// Whether the workload is paused (`spec.paused`): it restarts only once resumed.
    pub paused: bool,
    /// The workload, for Events.
    pub reference: ObjectReference,
}

/// The workloads `target` names, plus (with `auto`) every Deployment, StatefulSet and DaemonSet
/// of the namespace whose pod template uses the Secret and does not opt out.
pub async fn select(client: &Client, target: &Target) -> Result<Vec<WorkloadRef>, Failure> {
    let ns = &target.namespace;
    let mut found: Vec<WorkloadRef> = target
        .spec
        .targets
        .iter()
        .map(|t| WorkloadRef::new(t.kind, ns, &t.name))
        .collect();
    if target.spec.auto {
        found.extend(users::<Deployment>(client, ns, &target.secret, |d| d.spec.as_ref().map(|s| &s.template)).await?);
        found.extend(users::<StatefulSet>(client, ns, &target.secret, |s| s.spec.as_ref().map(|s| &s.template)).await?);
        found.extend(users::<DaemonSet>(client, ns, &target.secret, |d| d.spec.as_ref().map(|s| &s.template)).await?);
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// Workloads of kind `K` in `ns` whose pod template uses `secret`, except those opted out.
async fn users<K>(
    client: &Client,
    ns: &str,
    secret: &str,
    template: impl Fn(&K) -> Option<&PodTemplateSpec>,
) -> Result<Vec<WorkloadRef>, Failure>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let kind = kind_of::<K>();
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| Failure::from_kube(e, &format!("list {kind}s in namespace {ns}")))?;
    Ok(list
        .items
        .iter()
        .filter(|w| !opted_out(w.meta().annotations.as_ref()))
        .filter(|w| {
            template(w)
                .and_then(|t| t.spec.as_ref())
                .is_some_and(|s| uses_secret(s, secret))
        })
        .map(|w| WorkloadRef::new(kind, ns, &w.name_any()))
        .collect())
}

fn kind_of<K: Resource<DynamicType = ()>>() -> WorkloadKind {
    match K::kind(&()).as_ref() {
        "StatefulSet" => WorkloadKind::StatefulSet,
        "DaemonSet" => WorkloadKind::DaemonSet,
        _ => WorkloadKind::Deployment,
    }
}

/// Sets `annotations` on the pod template of `workload`, with a JSON merge patch that touches
/// nothing else, unless every one already has its value.
pub async fn patch(
    client: &Client,
    workload: &WorkloadRef,
    annotations: &BTreeMap<String, String>,
) -> Result<Patched, Failure> {
    let resource = api_resource(client, workload.kind).await?;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &workload.namespace, &resource);
    let current = api
        .get_opt(&workload.name)
        .await
        .map_err(|e| Failure::from_kube(e, &format!("read {workload}")))?
        .ok_or_else(|| {
            Failure::new(
                rollout::TARGET_NOT_FOUND,
                format!("{workload} not found in namespace {}", workload.namespace),
            )
        })?;
    let spec = current.data.get("spec");
    let have = spec.and_then(|s| s.pointer("/template/metadata/annotations"));
    let missing: serde_json::Map<String, Value> = annotations
        .iter()
        .filter(|(k, v)| have.and_then(|h| h.get(k.as_str())).and_then(Value::as_str) != Some(v.as_str()))
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let paused = spec.and_then(|s| s.get("paused")).and_then(Value::as_bool) == Some(true);
    let reference = current.object_ref(&resource);
    if missing.is_empty() {
        return Ok(Patched {
            changed: false,
            paused,
            reference,
        });
    }
    let body = json!({"spec": {"template": {"metadata": {"annotations": missing}}}});
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    api.patch(&workload.name, &params, &Patch::Merge(&body))
        .await
        .map_err(|e| Failure::from_kube(e, &format!("patch {workload}")))?;
    Ok(Patched {
        changed: true,
        paused,
        reference,
    })
}

/// The API resource of `kind`; for Argo Rollouts, only when the cluster serves it.
async fn api_resource(client: &Client, kind: WorkloadKind) -> Result<ApiResource, Failure> {
    Ok(match kind {
        WorkloadKind::Deployment => ApiResource::erase::<Deployment>(&()),
        WorkloadKind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
        WorkloadKind::DaemonSet => ApiResource::erase::<DaemonSet>(&()),
        WorkloadKind::Rollout => {
            let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Rollout");
            match discovery::pinned_kind(client, &gvk).await {
                Ok((resource, _)) => resource,
                Err(kube::Error::Discovery(_)) => return Err(argo_missing()),
                Err(kube::Error::Api(s)) if s.code == 404 => return Err(argo_missing()),
                Err(e) => return Err(Failure::from_kube(e, "discover argoproj.io/v1alpha1 Rollout")),
            }
        }
    })
}

fn argo_missing() -> Failure {
    Failure::new(
        rollout::KIND_NOT_SERVED,
        "kind Rollout (argoproj.io/v1alpha1) is not served by this cluster: is Argo Rollouts installed?".into(),
    )
}

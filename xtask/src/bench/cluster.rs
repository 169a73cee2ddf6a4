//! The API-server side of the benchmark: the client, the VaultSecrets it applies, and the
//! baseline — the operator's API-server writes done by a plain client, without Vault.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Config};
use serde_json::json;

/// Label on every object the benchmark creates.
pub const LABEL: &str = "vaultsync.dev/bench";
/// Writes in flight at once, as the operator's default `--concurrency`.
pub const CONCURRENCY: usize = 32;
/// The namespace of the first-sync latency probes.
pub const PROBE_NAMESPACE: &str = "bench-probe";

/// A client for the environment's admin kubeconfig.
pub async fn client(kubeconfig: &Path) -> Result<Client> {
    let kubeconfig = Kubeconfig::read_from(kubeconfig)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// The VaultSecret resource, without depending on the operator crate.
pub fn vault_secret_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("vaultsync.dev", "v1alpha1", "VaultSecret"))
}

/// VaultSecrets of one namespace.
pub fn vault_secrets(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &vault_secret_resource())
}

/// Creates namespace `name`.
pub async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(())
}

/// The namespace of the `i`th of the bulk objects.
pub fn namespace_of(prefix: &str, i: usize, namespaces: usize) -> String {
    format!("{prefix}-{}", i % namespaces.max(1))
}

/// The ServiceAccount of each namespace's Kubernetes-auth identity (`--kubernetes-auth`); its
/// OpenBao role is named after the namespace.
pub const SERVICE_ACCOUNT: &str = "bench";

/// A VaultSecret reading KV v2 `secret/{path}`, refreshed every `interval` (a Go duration); with
/// `kubernetes_auth`, as its namespace's own identity instead of the operator's token.
pub fn vault_secret(name: &str, ns: &str, path: &str, interval: &str, kubernetes_auth: bool) -> Result<DynamicObject> {
    let mut obj = DynamicObject::new(name, &vault_secret_resource()).within(ns);
    obj.metadata.labels = Some(BTreeMap::from([(LABEL.to_owned(), "1".to_owned())]));
    obj.data = json!({
        "spec": {
            "sources": [{ "kv": { "mount": "secret", "path": path } }],
            "refresh": { "interval": interval },
        }
    });
    if kubernetes_auth {
        obj.data["spec"]["auth"] = json!({
            "kubernetes": { "role": ns, "serviceAccountName": SERVICE_ACCOUNT }
        });
    }
    Ok(obj)
}

/// Creates ServiceAccount [`SERVICE_ACCOUNT`] in `ns`.
pub async fn create_service_account(client: &Client, ns: &str) -> Result<()> {
    let sa: k8s_openapi::api::core::v1::ServiceAccount =
        serde_json::from_value(json!({ "metadata": { "name": SERVICE_ACCOUNT } }))?;
    Api::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &sa)
        .await
        .with_context(|| format!("creating ServiceAccount {ns}/{SERVICE_ACCOUNT}"))?;
    Ok(())
}

/// The KV path (under the `secret` mount) of the `i`th of the bulk objects.
pub fn bulk_path(i: usize, paths: usize) -> String {
    format!("bench/p{}", i % paths.max(1))
}

/// Creates `n` VaultSecrets `vs-I` spread over `namespaces` namespaces `{prefix}-K`, reading the
/// `paths` paths round-robin, `CONCURRENCY` at a time. Returns how long the creates took.
pub async fn create_bulk(
    client: &Client,
    prefix: &str,
    n: usize,
    namespaces: usize,
    paths: usize,
    (interval, kubernetes_auth): (&str, bool),
) -> Result<Duration> {
    let started = Instant::now();
    stream::iter(0..n)
        .map(|i| async move {
            let ns = namespace_of(prefix, i, namespaces);
            let obj = vault_secret(&format!("vs-{i}"), &ns, &bulk_path(i, paths), interval, kubernetes_auth)?;
            vault_secrets(client, &ns)
                .create(&PostParams::default(), &obj)
                .await
                .with_context(|| format!("creating VaultSecret {ns}/vs-{i}"))?;
            anyhow::Ok(())
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<()>()
        .await?;
    Ok(started.elapsed())
}

/// The baseline: for each of the `n` VaultSecrets in `{prefix}-K` (already created), one
/// server-side apply of a Secret and one server-side apply of the VaultSecret's status — the
/// writes the operator does for a first sync — `CONCURRENCY` objects at a time. Returns the time
/// the writes took.
pub async fn baseline(client: &Client, prefix: &str, n: usize, namespaces: usize) -> Result<Duration> {
    let params = PatchParams::apply("vaultsync-bench").force();
    let started = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let params = params.clone();
            async move {
                let ns = namespace_of(prefix, i, namespaces);
                let name = format!("vs-{i}");
                let secret = json!({
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": { "name": name, "labels": { LABEL: "1" } },
                    "type": "Opaque",
                    // The same shape as the bench KV secrets, base64-encoded.
                    "data": { "username": "YmVuY2g=", "password": format!("cGFzc3dvcmQt{i:08}") },
                });
                Api::<Secret>::namespaced(client.clone(), &ns)
                    .patch(&name, &params, &Patch::Apply(&secret))
                    .await
                    .with_context(|| format!("applying Secret {ns}/{name}"))?;
                let status = json!({
                    "apiVersion": "vaultsync.dev/v1alpha1",
                    "kind": "VaultSecret",
                    "status": { "conditions": [{
                        "type": "Ready",
                        "status": "True",
                        "reason": "Synced",
                        "message": "baseline",
                        "observedGeneration": 1,
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }]},
                });
                vault_secrets(client, &ns)
                    .patch_status(&name, &params, &Patch::Apply(&status))
                    .await
                    .with_context(|| format!("writing the status of {ns}/{name}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<()>()
        .await?;
    Ok(started.elapsed())
}

/// Deletes the baseline's VaultSecrets and Secrets, so the operator never sees them.
pub async fn delete_labelled(client: &Client, prefix: &str, namespaces: usize) -> Result<()> {
    let lp = ListParams::default().labels(LABEL);
    for k in 0..namespaces {
        let ns = format!("{prefix}-{k}");
        vault_secrets(client, &ns)
            .delete_collection(&DeleteParams::default(), &lp)
            .await?;
        Api::<Secret>::namespaced(client.clone(), &ns)
            .delete_collection(&DeleteParams::default(), &lp)
            .await?;
    }
    Ok(())
}

/// `namespace/name` → resourceVersion of every VaultSecret and Secret in `namespaces`.
pub async fn resource_versions(client: &Client, namespaces: &[String]) -> Result<BTreeMap<String, String>> {
    let mut versions = BTreeMap::new();
    for ns in namespaces {
        let vs = vault_secrets(client, ns).list_metadata(&ListParams::default()).await?;
        for obj in vs.items {
            let key = format!("VaultSecret {ns}/{}", obj.metadata.name.unwrap_or_default());
            versions.insert(key, obj.metadata.resource_version.unwrap_or_default());
        }
        let secrets = Api::<Secret>::namespaced(client.clone(), ns)
            .list_metadata(&ListParams::default())
            .await?;
        for obj in secrets.items {
            let key = format!("Secret {ns}/{}", obj.metadata.name.unwrap_or_default());
            versions.insert(key, obj.metadata.resource_version.unwrap_or_default());
        }
    }
    Ok(versions)
}

/// How many entries of `after` are new or changed against `before`, per kind.
pub fn changed(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> (u64, u64) {
    let (mut vault_secrets, mut secrets) = (0, 0);
    for (key, version) in after {
        if before.get(key) != Some(version) {
            if key.starts_with("VaultSecret ") {
                vault_secrets += 1;
            } else {
                secrets += 1;
            }
        }
    }
    (secrets, vault_secrets)
}

/// kube-apiserver's own count of the requests it served (`apiserver_request_total` from its
/// `/metrics`), summed by "verb resource[/subresource]", for the difference between two moments.
pub async fn apiserver_requests(client: &Client) -> Result<BTreeMap<String, f64>> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await.context("kube-apiserver /metrics")?;
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|pair| pair.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_owned())
                .unwrap_or_default()
        };
        let (resource, subresource) = (label("resource"), label("subresource"));
        if resource.is_empty() {
            continue;
        }
        let what = if subresource.is_empty() {
            resource
        } else {
            format!("{resource}/{subresource}")
        };
        let key = format!("{} {what}", label("verb"));
        *counts.entry(key).or_insert(0.0) += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    Ok(counts)
}

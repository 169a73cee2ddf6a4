//! The destination Secret: what it should look like, whose it is, and writing it.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::super::error::{Error, Result};
use crate::api::VaultSecret;
use crate::{APPLIED_HASH_ANNOTATION, MANAGED_BY_LABEL, MANAGER};

/// The Secret vaultsync wants, with the hash that identifies it.
pub struct Desired {
    pub secret: Secret,
    /// Keyed hash of `data` (shown in status).
    pub data_hash: String,
    /// Keyed hash of everything applied (stored as an annotation).
    pub applied_hash: String,
}

/// The name of the destination Secret.
pub fn destination_name(vs: &VaultSecret) -> String {
    vs.spec.destination.name.clone().unwrap_or_else(|| vs.name_any())
}

/// Builds the Secret to apply for `vs` holding `data`.
pub fn desired(vs: &VaultSecret, data: BTreeMap<String, ByteString>, key: &crate::hash::HashKey) -> Result<Desired> {
    let dest = &vs.spec.destination;
    let type_ = dest.type_.clone().unwrap_or_else(|| "Opaque".into());
    let data_hash = key.data_hash(&data);
    let applied_hash = key.applied_hash(&type_, &dest.labels, &dest.annotations, &data_hash);
    let mut labels = dest.labels.clone();
    labels.insert(MANAGED_BY_LABEL.into(), MANAGER.into());
    let mut annotations = dest.annotations.clone();
    annotations.insert(APPLIED_HASH_ANNOTATION.into(), applied_hash.clone());
    let owner = owner_reference(vs)?;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(destination_name(vs)),
            namespace: vs.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        type_: Some(type_),
        data: Some(data),
        ..Default::default()
    };
    Ok(Desired {
        secret,
        data_hash,
        applied_hash,
    })
}

pub fn owner_reference(vs: &VaultSecret) -> Result<OwnerReference> {
    let mut owner = vs
        .controller_owner_ref(&())
        .ok_or_else(|| Error::InvalidSpec("the VaultSecret has no uid yet".into()))?;
    owner.block_owner_deletion = Some(true);
    Ok(owner)
}

/// Who an existing Secret belongs to, from this VaultSecret's point of view.
#[derive(Debug, PartialEq, Eq)]
pub enum Ownership {
    /// Controlled by this VaultSecret.
    Ours,
    /// Controlled by no one: adoptable with `takeOver`.
    Unowned,
    /// Controlled by another object (named).
    Foreign(String),
}

/// Classifies `existing` for `vs`.
pub fn ownership(existing: &Secret, vs: &VaultSecret) -> Ownership {
    let controller = existing.owner_references().iter().find(|o| o.controller == Some(true));
    match controller {
        Some(o) if Some(&o.uid) == vs.meta().uid.as_ref() => Ownership::Ours,
        Some(o) => Ownership::Foreign(format!("{} {}", o.kind, o.name)),
        None => Ownership::Unowned,
    }
}

/// Whether `existing` already is `desired`: same applied hash, exact data, and every label and
/// annotation vaultsync sets still in place (someone may have edited the Secret by hand).
pub fn up_to_date(existing: &Secret, desired: &Desired) -> bool {
    let want = &desired.secret;
    let contains = |have: &BTreeMap<String, String>, want: &Option<BTreeMap<String, String>>| {
        want.iter().flatten().all(|(k, v)| have.get(k) == Some(v))
    };
    existing.annotations().get(APPLIED_HASH_ANNOTATION) == Some(&desired.applied_hash)
        && existing.type_ == want.type_
        && existing.data.as_ref().unwrap_or(&BTreeMap::new()) == want.data.as_ref().unwrap_or(&BTreeMap::new())
        && contains(existing.labels(), &want.metadata.labels)
        && contains(existing.annotations(), &want.metadata.annotations)
}

/// Writes `desired` with server-side apply, then removes data keys someone else added (apply
/// cannot remove fields it does not own). A Secret whose type must change is recreated, since
/// the type is immutable.
pub async fn write(api: &Api<Secret>, existing: Option<&Secret>, desired: &Desired) -> Result<Secret> {
    let name = desired.secret.name_any();
    if let Some(existing) = existing
        && existing.type_ != desired.secret.type_
    {
        api.delete(&name, &DeleteParams::default())
            .await
            .map_err(Error::kube("recreate Secret with a new type"))?;
    }
    let mut body =
        serde_json::to_value(&desired.secret).map_err(|_| Error::InvalidSpec("Secret could not be encoded".into()))?;
    body["apiVersion"] = json!("v1");
    body["kind"] = json!("Secret");
    let params = PatchParams::apply(MANAGER).force();
    let written = api
        .patch(&name, &params, &Patch::Apply(&body))
        .await
        .map_err(Error::kube("apply Secret"))?;
    let want = desired.secret.data.as_ref();
    let extra: serde_json::Map<_, _> = written
        .data
        .iter()
        .flatten()
        .filter(|(k, _)| !want.is_some_and(|w| w.contains_key(*k)))
        .map(|(k, _)| (k.clone(), serde_json::Value::Null))
        .collect();
    if extra.is_empty() {
        return Ok(written);
    }
    let patch = json!({ "data": extra });
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    api.patch(&name, &params, &Patch::Merge(&patch))
        .await
        .map_err(Error::kube("remove foreign Secret keys"))
}

/// When `spec.destination.name` changed, deletes the Secret written under the old name (only if
/// this VaultSecret controls it).
pub async fn remove_renamed(vs: &VaultSecret, api: &Api<Secret>, name: &str) -> Result<()> {
    let Some(old) = vs.status.as_ref().and_then(|s| s.secret_name.as_deref()) else {
        return Ok(());
    };
    if old == name {
        return Ok(());
    }
    let Some(old_secret) = api.get_opt(old).await.map_err(Error::kube("read previous Secret"))? else {
        return Ok(());
    };
    if ownership(&old_secret, vs) == Ownership::Ours {
        api.delete(old, &DeleteParams::default())
            .await
            .map_err(Error::kube("delete previous Secret"))?;
    }
    Ok(())
}

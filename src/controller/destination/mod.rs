//! Making the destination Secret match what was read, with as few API calls as the metadata
//! cache allows:
//! - the Secret the metadata watch shows is ours, carries the applied hash we want, and has the
//!   resourceVersion this operator last wrote or verified: nothing to read, nothing to write;
//! - the cache knows no such Secret: create it (one call), and only if it turns out to exist
//!   after all, read it and decide as below;
//! - otherwise read it, check who owns it, and write it if it differs.

mod desired;

pub use desired::{Desired, Ownership, desired, destination_name, owner_reference, ownership, remove_renamed};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};

use super::Context;
use super::error::{Error, Result};
use super::owned::SecretMeta;
use super::report::rotation_reason;
use crate::api::VaultSecret;
use crate::events::EventType;
use crate::reasons::event;
use crate::{APPLIED_HASH_ANNOTATION, MANAGER};

/// What applying the destination did.
pub struct Applied {
    /// The Secret's resourceVersion afterwards.
    pub secret_version: Option<String>,
    /// The Secret existed before.
    pub existed: bool,
    /// Its content and metadata were already as desired: nothing was written.
    pub unchanged: bool,
}

/// Makes the destination Secret of `vs` equal `desired`. `last_version` is the resourceVersion
/// this operator last wrote or verified; `env_skipped` names keys envFrom would skip.
pub async fn apply(
    vs: &VaultSecret,
    ctx: &Context,
    api: &Api<Secret>,
    desired: &Desired,
    last_version: Option<&str>,
    env_skipped: &[String],
) -> Result<Applied> {
    let name = desired.secret.name_any();
    let cached = ctx.secrets.get(&vs.namespace().unwrap_or_default(), &name);
    match cached {
        Some(meta) if cached_up_to_date(&meta, vs, desired, last_version) => {
            return Ok(Applied {
                secret_version: meta.resource_version().map(str::to_owned),
                existed: true,
                unchanged: true,
            });
        }
        Some(_) => {}
        None => {
            let params = PostParams {
                field_manager: Some(MANAGER.into()),
                ..Default::default()
            };
            match api.create(&params, &desired.secret).await {
                Ok(written) => {
                    report_write(vs, ctx, None, desired, false, env_skipped).await;
                    return Ok(Applied {
                        secret_version: written.resource_version(),
                        existed: false,
                        unchanged: false,
                    });
                }
                // Someone else's Secret (not in the cache), or ours not yet seen by the watch.
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(e) => return Err(Error::kube("create Secret")(e)),
            }
        }
    }
    let existing = api.get_opt(&name).await.map_err(Error::kube("read Secret"))?;
    let adopted = match &existing {
        Some(existing) => check_ownership(existing, vs, &name)?,
        None => false,
    };
    if existing.as_ref().is_some_and(|e| desired::up_to_date(e, desired)) {
        return Ok(Applied {
            secret_version: existing.and_then(|e| e.resource_version()),
            existed: true,
            unchanged: true,
        });
    }
    let written = desired::write(api, existing.as_ref(), desired).await?;
    report_write(vs, ctx, existing.as_ref(), desired, adopted, env_skipped).await;
    Ok(Applied {
        secret_version: written.resource_version(),
        existed: existing.is_some(),
        unchanged: false,
    })
}

/// Whether the cached metadata proves the Secret already is `desired`: ours, the applied hash
/// and every label and annotation in place, and not changed since we last wrote or read it.
fn cached_up_to_date(meta: &SecretMeta, vs: &VaultSecret, desired: &Desired, last_version: Option<&str>) -> bool {
    let want = &desired.secret.metadata;
    meta.controlled_by(vs.meta().uid.as_deref())
        && last_version.is_some()
        && meta.resource_version() == last_version
        && meta.annotation(APPLIED_HASH_ANNOTATION) == Some(desired.applied_hash.as_str())
        && meta.has_labels(want.labels.as_ref())
        && meta.has_annotations(want.annotations.as_ref())
}

/// Whether `vs` may write `existing`: ours, or unowned with `takeOver` (then `true`: adopted).
fn check_ownership(existing: &Secret, vs: &VaultSecret, name: &str) -> Result<bool> {
    match desired::ownership(existing, vs) {
        Ownership::Ours => Ok(false),
        Ownership::Unowned if vs.spec.destination.take_over => Ok(true),
        Ownership::Unowned => Err(Error::SecretNotOwned(format!(
            "Secret {name} already exists and was not created by this VaultSecret; it is left untouched (set spec.destination.takeOver: true to adopt it)"
        ))),
        Ownership::Foreign(owner) => Err(Error::SecretNotOwned(format!(
            "Secret {name} already exists and is controlled by {owner}; it is left untouched"
        ))),
    }
}

/// Metrics and Events for a write of the Secret's content.
async fn report_write(
    vs: &VaultSecret,
    ctx: &Context,
    existing: Option<&Secret>,
    desired: &Desired,
    adopted: bool,
    env_skipped: &[String],
) {
    let name = desired.secret.name_any();
    let rotation = rotation_reason(existing, desired, vs);
    if let Some(reason) = rotation {
        ctx.observe_rotation(vs, reason);
    }
    // A new Secret gets no Event: the Ready condition says it synced, and at thousands of
    // VaultSecrets one Event each would be a third of the first sync's API writes. A missing
    // Secret that is a rotation (`restored`) had been synced before: it was deleted.
    if adopted {
        let note = format!("Adopted existing Secret {name} (spec.destination.takeOver)");
        ctx.publish(vs, EventType::Normal, event::SECRET_ADOPTED, note).await;
    } else if existing.is_some() {
        ctx.publish(
            vs,
            EventType::Normal,
            event::SECRET_WRITTEN,
            format!("Wrote Secret {name}"),
        )
        .await;
    } else if rotation.is_some() {
        let note = format!("Wrote Secret {name} again: it had been deleted");
        ctx.publish(vs, EventType::Normal, event::SECRET_WRITTEN, note).await;
    }
    // Only when the content was written, so a refresh that changes nothing stays quiet.
    if !env_skipped.is_empty() {
        let note = format!(
            "Keys {} of Secret {name} are not shell variable names: envFrom passes them to containers (those starting with a digit only from Kubernetes 1.32), but a shell cannot expand them (spec.destination.envKeys: true renames them)",
            env_skipped.join(", ")
        );
        ctx.publish(vs, EventType::Warning, event::KEYS_NOT_SHELL_NAMES, note)
            .await;
    }
}

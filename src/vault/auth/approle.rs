//! Vault's AppRole auth, with the secret ID from a Secret of the VaultSecret's namespace.

use serde_json::json;

use super::{Cluster, Resolved};
use crate::api::AppRoleAuth;
use crate::vault::{Credential, Identity};

const FIELD: &str = "spec.auth.appRole.secretIdRef";

pub(super) async fn resolve<'a, C: Cluster>(
    spec: &'a AppRoleAuth,
    cluster: &'a C,
) -> Result<Resolved<'a, C::Error>, C::Error> {
    let ns = cluster.namespace();
    let secret = cluster.secret_value(&spec.secret_id_ref, FIELD).await?;
    let name = &spec.secret_id_ref.name;
    let identity = Identity::new(
        "approle",
        format!("approle/{ns}/{name}"),
        vec![
            ("mount", spec.mount.as_str().into()),
            ("role_id", spec.role_id.as_str().into()),
            ("namespace", ns.into()),
            ("secret", name.as_str().into()),
            ("secret_uid", secret.uid.into()),
            ("secret_version", secret.resource_version.into()),
        ],
    );
    let secret_id = secret.value;
    Ok(Resolved::new(identity, move || {
        let credential = Credential::Login {
            method: "approle",
            mount: spec.mount.clone(),
            body: json!({"role_id": spec.role_id, "secret_id": secret_id}),
            hint,
        };
        async move { Ok(credential) }
    }))
}

/// Vault does not say which of the two it was.
fn hint(errors: &str) -> Option<&'static str> {
    errors.contains("invalid role or secret ID").then_some(
        "spec.auth.appRole.roleId is not the role's, or the secret ID in secretIdRef is wrong, \
         expired or used up",
    )
}

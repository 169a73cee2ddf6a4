//! A Vault token kept in a Secret of the VaultSecret's namespace (`spec.auth.token`).

use super::{Cluster, Resolved};
use crate::api::TokenAuth;
use crate::vault::{Credential, Identity};

const FIELD: &str = "spec.auth.token.secretRef";

pub(super) async fn resolve<'a, C: Cluster>(
    spec: &'a TokenAuth,
    cluster: &'a C,
) -> Result<Resolved<'a, C::Error>, C::Error> {
    let ns = cluster.namespace();
    let secret = cluster.secret_value(&spec.secret_ref, FIELD).await?;
    let name = &spec.secret_ref.name;
    // The Secret's uid and resourceVersion: a changed token is another identity.
    let identity = Identity::new(
        "token",
        format!("token/{ns}/{name}"),
        vec![
            ("namespace", ns.into()),
            ("secret", name.as_str().into()),
            ("secret_uid", secret.uid.into()),
            ("secret_version", secret.resource_version.into()),
        ],
    );
    let token = secret.value;
    Ok(Resolved::new(identity, move || {
        let token = token.clone();
        async move { Ok(Credential::Token(token)) }
    }))
}

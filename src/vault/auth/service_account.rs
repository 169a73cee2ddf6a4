//! Logins that present a short-lived token of a ServiceAccount of the VaultSecret's namespace
//! (`kubernetes`, `jwt`): they differ only in how Vault checks the token.

use serde_json::json;

use super::{Cluster, Resolved};
use crate::api::TokenRequestSpec;
use crate::vault::login::Hint;
use crate::vault::{Credential, Identity};

/// One such login, as its method's spec gives it.
pub(super) struct TokenLogin<'a> {
    pub method: &'static str,
    pub mount: &'a str,
    pub role: &'a str,
    pub token: TokenRequestSpec<'a>,
    pub hint: Hint,
}

pub(super) async fn resolve<'a, C: Cluster>(
    login: TokenLogin<'a>,
    cluster: &'a C,
) -> Result<Resolved<'a, C::Error>, C::Error> {
    let TokenLogin {
        method,
        mount,
        role,
        token,
        hint,
    } = login;
    let ns = cluster.namespace();
    let sa = token.service_account_name;
    let field = format!("{}.serviceAccountName", token.field);
    let uid = cluster.service_account_uid(sa, &field).await?;
    let identity = Identity::new(
        method,
        format!("{method}/{ns}/{sa}/{role}"),
        vec![
            ("mount", mount.into()),
            ("role", role.into()),
            ("namespace", ns.into()),
            ("service_account", sa.into()),
            ("uid", uid.into()),
            ("audiences", token.audiences.into()),
        ],
    );
    Ok(Resolved::new(identity, move || async move {
        let jwt = cluster.service_account_token(token).await?;
        Ok(Credential::Login {
            method,
            mount: mount.to_owned(),
            body: json!({"role": role, "jwt": jwt}),
            hint,
        })
    }))
}

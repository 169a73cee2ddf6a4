//! The operator's own token (`--vault-token-file`), for namespaces the administrator allow-lists.

use super::{Cluster, Resolved};
use crate::vault::{Credential, Identity};

pub(super) fn resolve<C: Cluster>(cluster: &C) -> Result<Resolved<'_, C::Error>, C::Error> {
    let token = cluster.operator_token()?;
    Ok(Resolved::new(Identity::operator(), move || {
        let token = token.clone();
        async move { Ok(Credential::Token(token)) }
    }))
}

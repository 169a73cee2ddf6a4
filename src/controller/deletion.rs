//! A deleted VaultSecret that holds the lease finalizer: its leases are revoked (or recorded as
//! owed when Vault does not answer), then it is let go.

use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::error::Result;
use super::tracker::Asked;
use super::{Context, connection, identity, leases};
use crate::api::VaultSecret;
use crate::vault::{self, Connection};

/// A deleted VaultSecret that holds the lease finalizer: revokes its leases, then lets it go.
pub async fn finalize(vs: &VaultSecret, ctx: &Context) -> Result<Action> {
    if !vs.finalizers().iter().any(|f| f == leases::FINALIZER) {
        return Ok(Action::await_change());
    }
    let key = super::key_of(vs);
    let attempt = ctx.tracker.failures(&key) + 1;
    let conn = match connection::resolve(vs, ctx).await {
        Ok(conn) => Ok(conn),
        // The CA Secret may be gone with its namespace: where the leases are, with the default CA.
        Err(e) => connection::place(vs, &ctx.settings)
            .map(|(address, namespace)| Connection {
                address,
                namespace,
                ca_pem: None,
            })
            .map_err(|_| e),
    };
    let handle = match &conn {
        Ok(conn) => session(vs, ctx, conn).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let client = handle.as_ref().map(|h| h.client.as_ref()).map_err(String::as_str);
    match leases::finalize(vs, ctx, conn.as_ref(), client, attempt).await {
        Ok(()) => Ok(Action::await_change()),
        Err(e) => {
            tracing::info!(reason = e.reason(), "{e}");
            // The tracker hands out the retry when due.
            ctx.tracker.failed(key, Asked::of(vs), |failures| {
                ctx.settings.backoff.delay(failures, &mut rand::rng())
            });
            Ok(Action::await_change())
        }
    }
}

/// An authenticated client for `vs`.
async fn session(vs: &VaultSecret, ctx: &Context, conn: &Connection) -> Result<vault::Handle> {
    let kube = identity::Kube::new(vs, ctx);
    let resolved = identity::resolve(vs, &kube).await?;
    let (handle, _) = ctx.vault.get(conn, &resolved.identity, &resolved.credential).await?;
    Ok(handle)
}

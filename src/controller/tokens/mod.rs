//! Vault tokens that own leases: kept in one Secret of the operator's namespace (`store`) so a
//! restarted operator renews their leases, and revoked once they own none (`release`).

pub mod release;
mod store;

pub use store::{SECRET_NAME, secret_token_store};

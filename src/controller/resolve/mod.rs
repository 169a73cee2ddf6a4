//! What a VaultSecret may reach and as whom, decided before any request: the administrator's
//! trust boundary (`trust`), the Vault connection (`connection`), and the identity it logs in as
//! (`identity`, with `token_check` proving a minted token useless against the API server).

pub mod connection;
pub mod identity;
mod token_check;
pub mod trust;

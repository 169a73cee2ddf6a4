//! What a VaultSecret may reach and as whom, decided before any request: the administrator's
//! trust boundary (`trust`), the Vault connection (`connection`), and the identity it logs in as
//! (`identity`, with `token_check` proving a minted token useless against the API server, and
//! `recent_uids` sparing a bulk one ServiceAccount read each).

pub mod connection;
pub mod identity;
pub mod recent_uids;
mod token_check;
pub mod trust;

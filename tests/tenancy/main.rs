//! Identity and tenancy end to end (issue 3): each VaultSecret logs in to OpenBao as a
//! ServiceAccount of its own namespace — Kubernetes auth checked by a real TokenReview against the
//! test API server — or with AppRole or a token from a Secret of its namespace. The operator's own
//! token serves only the allow-listed namespace [`team::ALLOWED_NS`].
//!
//! A binary of its own: its operator runs with settings of its own (see [`team::op`]).

#![allow(clippy::panic)] // test helpers panic on purpose

#[path = "../common/mod.rs"]
mod common;

mod team;

mod audit;
mod default_identity;
mod isolation;
mod jwt;
mod leaks;
mod login_failures;
mod methods;
mod privileged;
mod renewal;
mod service_account;
mod sharing;

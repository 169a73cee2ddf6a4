//! End-to-end tests against a real kube-apiserver + controller-manager + OpenBao, all started
//! by the project on loopback. One environment and one operator serve every test here; each test
//! works in a namespace of its own.

#![allow(clippy::panic)] // test helpers panic on purpose

#[path = "../common/mod.rs"]
mod common;

mod argocd;
mod coalesce;
mod errors;
mod install;
mod metrics;
mod ownership;
mod sync;
mod validation;

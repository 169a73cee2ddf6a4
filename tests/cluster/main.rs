//! vaultsync as its users run it: its own image on a real node (containerd + kubelet), installed
//! from `config/default` through an overlay that only points it at this environment, with pods
//! that consume the Secrets it writes.
//!
//! Pods use `hostNetwork` (the node has only loopback), so the overlay also gives the operator the
//! API server's loopback address and a free port for its HTTP endpoints; nothing else of the
//! shipped manifests changes.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

mod database;
mod examples;
mod install;
mod vault_in_cluster;
mod workloads;

use common::cluster::{POD_TIMEOUT, cluster};

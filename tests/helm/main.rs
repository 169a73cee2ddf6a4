//! The Helm chart (`charts/vaultsync`) run by a real `helm` (built from the Go module proxy into
//! the cache): it lints clean, its values are checked by its schema, with its defaults it renders
//! exactly what `config/default` applies (and with `scope: namespace` and the Prometheus toggles,
//! `config/namespaced` and `config/prometheus`), and `helm install` on the environment's node runs
//! an operator that syncs a Secret, while namespace users get VaultSecrets through the built-in
//! `edit` and `view` roles.
//!
//! Its own binary: the install would otherwise run beside `tests/cluster`'s and sync the same
//! VaultSecrets.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

mod install;
mod render;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The cached helm, built on first use.
fn helm() -> Command {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    let path = HELM.get_or_init(|| xtask::ensure_helm().unwrap_or_else(|e| panic!("build helm: {e:#}")));
    let mut cmd = Command::new(path);
    cmd.current_dir(xtask::workspace_root());
    cmd
}

/// Runs `helm args`; (success, stdout, stderr).
fn run_helm(args: &[&str]) -> (bool, String, String) {
    let out = helm().args(args).output().expect("run helm");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

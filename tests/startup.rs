//! Started before its CRD, the operator waits for it — not ready, saying why — and starts once
//! the CRD is applied, instead of exiting into a crash loop. Its own binary: its environment must
//! not have the CRD yet.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[path = "common/mod.rs"]
mod common;

use std::process::Command;
use std::time::Duration;

use common::{free_port, kubectl, poll_for};
use xtask::Env;

/// GET `path` on the operator's HTTP endpoints: the status code, or 0 when nothing answers.
fn status(addr: &str, path: &str) -> u16 {
    let addr = addr.parse().expect("socket address");
    xtask::http::request(addr, "GET", path, None, None).map_or(0, |response| response.status)
}

#[tokio::test]
async fn started_before_its_crd_the_operator_waits_unready_and_starts_when_it_appears() {
    let env = Env::shared();
    let absent = env
        .kubectl()
        .args(["get", "crd", "vaultsecrets.vaultsync.dev"])
        .output()
        .unwrap();
    assert!(!absent.status.success(), "this environment must not have the CRD yet");
    kubectl(env, &["create", "namespace", "vaultsync-system"]);

    let addr = format!("127.0.0.1:{}", free_port());
    let log = env.dir.join("startup-operator.log");
    let output = std::fs::File::create(&log).unwrap();
    let mut operator = Command::new(env!("CARGO_BIN_EXE_vaultsync"))
        .arg("run")
        .env_clear()
        .env("KUBECONFIG", &env.kubeconfig)
        .env("VAULTSYNC_VAULT_ADDRESS", &env.vault_addr)
        .env("VAULTSYNC_METRICS_ADDRESS", &addr)
        .env("VAULTSYNC_LEADER_ELECTION", "false")
        .env("POD_NAMESPACE", "vaultsync-system")
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .spawn()
        .expect("start vaultsync run");
    let waits = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("is the CRD installed?")
            .count()
    };
    // Two tries, so it is waiting rather than about to exit.
    poll_for(
        "the operator to say twice it waits for the CRD",
        Duration::from_secs(30),
        async || (waits() >= 2).then_some(()),
    )
    .await;
    assert!(
        operator.try_wait().unwrap().is_none(),
        "the operator exited: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert_eq!(status(&addr, "/healthz"), 200, "alive while waiting");
    assert_eq!(status(&addr, "/readyz"), 503, "not ready while waiting");

    kubectl(
        env,
        &[
            "apply",
            "-f",
            concat!(env!("CARGO_MANIFEST_DIR"), "/crds/vaultsecret.yaml"),
        ],
    );
    // The waits grow to 4 s by now; the controller lists and becomes ready soon after.
    poll_for(
        "the operator to become ready once the CRD exists",
        Duration::from_secs(60),
        async || (status(&addr, "/readyz") == 200).then_some(()),
    )
    .await;
    assert!(operator.try_wait().unwrap().is_none());
    operator.kill().unwrap();
    operator.wait().unwrap();
}

//! Started before its CRD, the operator waits for it — not ready, saying why — and starts once
//! the CRD is applied, instead of exiting into a crash loop. Its own binary: its environment must
//! not have the CRD yet.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use xtask::Env;

/// GET `path` on the operator's HTTP endpoints: the status code, or 0 when nothing answers.
fn status(addr: &str, path: &str) -> u16 {
    let addr = addr.parse().expect("socket address");
    xtask::http::request(addr, "GET", path, None, None).map_or(0, |response| response.status)
}

/// Polls `check` every 200 ms for up to `limit`.
fn wait(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn started_before_its_crd_the_operator_waits_unready_and_starts_when_it_appears() {
    let env = Env::shared();
    let kubectl = |args: &[&str]| {
        let out = env.kubectl().args(args).output().expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let crd = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/vaultsecret.yaml");
    let absent = env
        .kubectl()
        .args(["get", "crd", "vaultsecrets.vaultsync.dev"])
        .output()
        .unwrap();
    assert!(!absent.status.success(), "this environment must not have the CRD yet");
    kubectl(&["create", "namespace", "vaultsync-system"]);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let log = env.dir.join("startup-operator.log");
    let mut operator = Command::new(env!("CARGO_BIN_EXE_vaultsync"))
        .arg("run")
        .env_clear()
        .env("KUBECONFIG", &env.kubeconfig)
        .env("VAULTSYNC_VAULT_ADDRESS", &env.vault_addr)
        .env("VAULTSYNC_METRICS_ADDRESS", &addr)
        .env("VAULTSYNC_LEADER_ELECTION", "false")
        .env("POD_NAMESPACE", "vaultsync-system")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("start vaultsync run");
    let said_why = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("is the CRD installed?")
    };
    wait(
        "the operator to say it waits for the CRD",
        Duration::from_secs(30),
        said_why,
    );
    // A few tries later it still runs, alive and not ready.
    wait("a second try", Duration::from_secs(30), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("is the CRD installed?")
            .count()
            >= 2
    });
    assert!(
        operator.try_wait().unwrap().is_none(),
        "the operator exited: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert_eq!(status(&addr, "/healthz"), 200, "alive while waiting");
    assert_eq!(status(&addr, "/readyz"), 503, "not ready while waiting");

    kubectl(&["apply", "-f", crd]);
    // The waits grow to 4 s by now; the controller lists and becomes ready soon after.
    wait(
        "the operator to become ready once the CRD exists",
        Duration::from_secs(60),
        || status(&addr, "/readyz") == 200,
    );
    assert!(operator.try_wait().unwrap().is_none());
    operator.kill().unwrap();
    operator.wait().unwrap();
}

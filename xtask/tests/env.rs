//! The shared environment works end to end: Kubernetes API, controllers, ServiceAccount tokens
//! and OpenBao with data that survives a restart.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use xtask::Env;

/// Runs `cmd`, asserts success, returns stdout.
fn run(cmd: &mut Command) -> String {
    let output = cmd.output().unwrap();
    assert!(
        output.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Retries `cmd` until it succeeds or `timeout` passes.
fn eventually(timeout: Duration, mut cmd: impl FnMut() -> Command) -> String {
    let start = Instant::now();
    loop {
        let output = cmd().output().unwrap();
        if output.status.success() {
            return String::from_utf8(output.stdout).unwrap();
        }
        assert!(
            start.elapsed() < timeout,
            "{:?} still failing after {timeout:?}: {}",
            cmd(),
            String::from_utf8_lossy(&output.stderr)
        );
        thread::sleep(Duration::from_millis(250));
    }
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

#[test]
fn a_new_namespace_gets_a_service_account_whose_token_the_api_server_accepts() {
    let env = Env::shared();
    let ns = unique("xtask");
    run(env.kubectl().args(["create", "namespace", &ns]));
    eventually(Duration::from_secs(30), || {
        let mut cmd = env.kubectl();
        cmd.args(["get", "serviceaccount", "default", "--namespace", &ns]);
        cmd
    });

    let token = run(env
        .kubectl()
        .args(["create", "token", "default", "--namespace", &ns, "--audience=vault"]));
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token}");

    let review = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": { "token": token, "audiences": ["vault"] },
    });
    let output = with_input(
        env.kubectl().args(["create", "--output=json", "--filename=-"]),
        &review.to_string(),
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["status"]["authenticated"], true, "{status}");
    assert_eq!(
        status["status"]["user"]["username"],
        format!("system:serviceaccount:{ns}:default")
    );

    run(env.kubectl().args(["delete", "namespace", &ns, "--wait=false"]));
}

#[test]
fn the_api_server_url_and_ca_describe_a_reachable_server() {
    let env = Env::shared();
    assert!(env.api_server_url().starts_with("https://127.0.0.1:"));
    assert!(env.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    let version = run(env.kubectl().args(["version", "--output=json"]));
    let version: serde_json::Value = serde_json::from_str(&version).unwrap();
    assert_eq!(
        version["serverVersion"]["gitVersion"],
        format!("v{}", xtask::K8S_VERSION)
    );
}

#[test]
fn secrets_owned_by_a_deleted_custom_resource_are_garbage_collected() {
    let env = Env::shared();
    let ns = unique("xtask-gc");
    run(env.kubectl().args(["create", "namespace", &ns]));
    let crd = r#"{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.xtask.example.com"},
        "spec": {"group": "xtask.example.com", "scope": "Namespaced",
          "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget"},
          "versions": [{"name": "v1", "served": true, "storage": true,
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}"#;
    apply(env, crd);
    run(env
        .kubectl()
        .args(["wait", "--for=condition=Established", "crd/gadgets.xtask.example.com"]));
    let gadget = format!(
        r#"{{"apiVersion": "xtask.example.com/v1", "kind": "Gadget", "metadata": {{"name": "g", "namespace": "{ns}"}}}}"#
    );
    // The new resource type takes a moment to be served.
    let start = Instant::now();
    while !try_apply(env, &gadget) {
        assert!(start.elapsed() < Duration::from_secs(30), "cannot create a Gadget");
        thread::sleep(Duration::from_millis(250));
    }
    let uid = run(env.kubectl().args([
        "get",
        "gadget",
        "g",
        "--namespace",
        &ns,
        "--output=jsonpath={.metadata.uid}",
    ]));
    let secret = format!(
        r#"{{"apiVersion": "v1", "kind": "Secret", "metadata": {{"name": "owned", "namespace": "{ns}",
            "ownerReferences": [{{"apiVersion": "xtask.example.com/v1", "kind": "Gadget", "name": "g", "uid": "{uid}"}}]}},
            "data": {{"k": "dg=="}}}}"#
    );
    apply(env, &secret);

    run(env.kubectl().args(["delete", "gadget", "g", "--namespace", &ns]));
    // The controller-manager refreshes its REST mapping and the garbage collector its monitors
    // every 30 s (hard-coded), so a brand-new kind takes up to about a minute; later ones are instant.
    let start = Instant::now();
    while run(env
        .kubectl()
        .args(["get", "secrets", "--namespace", &ns, "--output=name"]))
    .contains("secret/owned")
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the owned Secret was not garbage collected"
        );
        thread::sleep(Duration::from_millis(250));
    }
    run(env.kubectl().args(["delete", "namespace", &ns, "--wait=false"]));
}

/// Runs `cmd` with `input` on stdin.
fn with_input(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// `kubectl apply` of a JSON manifest; true on success.
fn try_apply(env: &Env, json: &str) -> bool {
    with_input(env.kubectl().args(["apply", "--filename=-"]), json)
        .status
        .success()
}

fn apply(env: &Env, json: &str) {
    assert!(try_apply(env, json), "kubectl apply failed for {json}");
}

#[test]
fn openbao_keeps_kv_data_across_a_stop_and_start() {
    let env = Env::shared();
    let path = format!("secret/{}", unique("xtask"));
    run(env.bao().args(["kv", "put", &path, "answer=42"]));
    run(env.bao().args(["kv", "put", "kv1/xtask", "v=1"]));
    assert_eq!(run(env.bao().args(["kv", "get", "-field=answer", &path])).trim(), "42");

    env.stop_openbao().unwrap();
    assert!(
        !env.bao().arg("status").output().unwrap().status.success(),
        "OpenBao still answers"
    );
    env.start_openbao().unwrap();

    assert_eq!(run(env.bao().args(["kv", "get", "-field=answer", &path])).trim(), "42");
    assert_eq!(run(env.bao().args(["kv", "get", "-field=v", "kv1/xtask"])).trim(), "1");
    let mounts = run(env.bao().args(["secrets", "list", "-format=json"]));
    let mounts: serde_json::Value = serde_json::from_str(&mounts).unwrap();
    assert_eq!(mounts["secret/"]["options"]["version"], "2");
}

//! The operator from `config/default`, as a pod of its own image: probes pass, it runs as the
//! image's non-root user on a read-only root file system, serves its metrics, and renders templates
//! in its limited child process inside the image.

use std::fs;

use serde_json::json;

use crate::cluster;
use crate::common::auth::{kubernetes_role, read_policy};
use crate::common::{OPERATOR_NS, TestNs, has_value};

/// Pids of the processes whose command line is exactly `argv`.
fn processes(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

#[tokio::test]
async fn the_operator_pod_runs_as_a_non_root_user_on_a_read_only_root() {
    let op = cluster();
    let ready = op
        .env
        .kubectl()
        .args(["get", "deployment", "vaultsync", "-n", OPERATOR_NS, "-o"])
        .arg("jsonpath={.status.readyReplicas}")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ready.stdout),
        "1",
        "the readiness probe passes"
    );
    let pids = processes(&["/vaultsync", "run"]);
    let [pid] = pids.as_slice() else {
        panic!("expected one operator process from the image, found {pids:?}")
    };
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uids.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["65532"; 4],
        "the image's user, not root: {uids}"
    );
    let caps = status.lines().find(|l| l.starts_with("CapEff:")).unwrap();
    assert!(caps.ends_with("0000000000000000"), "no capabilities: {caps}");
    let mounts = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let root = mounts
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .expect("a root mount");
    let options = root.split(' ').nth(5).unwrap();
    assert!(
        options.split(',').any(|o| o == "ro"),
        "read-only root file system: {root}"
    );
    let (code, body) = op.get("/metrics").await;
    assert_eq!(code, 200);
    assert!(body.contains("vaultsync_"), "the pod serves its metrics");
}

#[tokio::test]
async fn templates_render_in_the_limited_child_process_inside_the_image() {
    let op = cluster();
    let t = TestNs::new_in(op, "templates").await;
    read_policy(&op.bao, &t.ns, &t.ns);
    kubernetes_role(&op.bao, &t.ns, &t.ns, "app", &t.ns, &[]);
    t.create_service_account("app").await;
    op.bao
        .put(&t.path("db"), &[("username", "shop"), ("password", "hunter2")]);
    let spec = json!({
        "auth": {"kubernetes": {"role": t.ns, "serviceAccountName": "app"}},
        "sources": [{"kv": {"mount": "secret", "path": t.path("db")}}],
        "destination": {"templates": {"url": "postgres://{{ username }}:{{ password }}@db:5432/shop"}},
    });
    t.create_vs("db", spec).await.expect("create VaultSecret");
    t.wait_ready("db", "True", "Synced").await;
    t.wait_secret(
        "db",
        "the rendered template",
        has_value("url", "postgres://shop:hunter2@db:5432/shop"),
    )
    .await;
}

#[test]
fn the_operator_image_holds_the_binary_and_no_shell() {
    let archive = xtask::image::operator().expect("build the operator image");
    let layer = xtask::image::oci::layer_paths(&archive.path).expect("read the image archive");
    for path in [
        "vaultsync",
        "etc/passwd",
        "etc/ssl/certs/ca-certificates.crt",
        "proc/",
        "etc/resolv.conf",
    ] {
        assert!(layer.iter().any(|p| p == path), "{path} missing from {layer:?}");
    }
    for absent in ["bin/", "bin/sh", "usr/", "sbin/"] {
        assert!(
            !layer.iter().any(|p| p == absent),
            "{absent} is in the image: {layer:?}"
        );
    }
}

#[tokio::test]
async fn the_shipped_pod_template_is_admitted_where_pod_security_enforces_restricted() {
    let op = cluster();
    let t = TestNs::new_in(op, "restricted").await;
    t.kubectl(&[
        "label",
        "namespace",
        &t.ns,
        "pod-security.kubernetes.io/enforce=restricted",
    ]);
    t.create_service_account("vaultsync").await;
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/default");
    let out = op.env.kubectl().args(["kustomize", config]).output().unwrap();
    assert!(
        out.status.success(),
        "kubectl kustomize: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deployment = serde_yaml::Deserializer::from_slice(&out.stdout)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .find(|doc: &serde_json::Value| doc["kind"] == "Deployment")
        .expect("config/default has a Deployment");
    // The pod exactly as the shipped Deployment would create it (the overlay's host network is
    // what the local node needs, and is why its namespace cannot enforce `restricted`).
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "vaultsync-as-shipped", "namespace": t.ns},
        "spec": deployment["spec"]["template"]["spec"],
    });
    let mut create = op
        .env
        .kubectl()
        .args(["create", "--dry-run=server", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(create.stdin.as_mut().unwrap(), pod.to_string().as_bytes()).unwrap();
    let out = create.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "admitted under restricted: {stderr}"
    );
}

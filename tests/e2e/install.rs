//! The install manifests in `config/` are accepted by the real API server.

use crate::common::operator;

#[tokio::test]
async fn the_install_manifests_pass_server_side_validation() {
    let env = operator().env;
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/default");
    let out = env
        .kubectl()
        .args(["apply", "--dry-run=server", "-k", config])
        .output()
        .expect("run kubectl");
    let (out, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(err.is_empty(), "kubectl apply -k config/default: {err}");
    for object in [
        "customresourcedefinition.apiextensions.k8s.io/vaultsecrets.vaultsync.dev",
        "clusterrole.rbac.authorization.k8s.io/vaultsync",
        "deployment.apps/vaultsync",
    ] {
        assert!(out.contains(object), "{object} missing from: {out}");
    }
}

#[tokio::test]
async fn every_example_passes_server_side_validation() {
    let env = operator().env;
    // The examples live in namespaces `shop` and `default`.
    let out = env.kubectl().args(["create", "namespace", "shop"]).output().expect("run kubectl");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() || err.contains("AlreadyExists"), "create namespace shop: {err}");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut files: Vec<_> = std::fs::read_dir(dir).expect("examples/").map(|e| e.expect("entry").path()).collect();
    files.sort();
    assert!(files.len() >= 5, "examples: {files:?}");
    for file in files {
        let out = env.kubectl().args(["apply", "--dry-run=server", "-f"]).arg(&file).output().expect("run kubectl");
        assert!(out.status.success(), "{}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    }
}

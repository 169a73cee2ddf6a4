//! `crds/vaultsecret.yaml` is exactly what `vaultsync crd` prints.

#[test]
fn the_committed_crd_matches_vaultsync_crd() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vaultsync"))
        .arg("crd")
        .output()
        .expect("run vaultsync crd");
    assert!(
        out.status.success(),
        "vaultsync crd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/vaultsecret.yaml"))
        .expect("read crds/vaultsecret.yaml");
    assert!(
        String::from_utf8_lossy(&out.stdout) == committed,
        "crds/vaultsecret.yaml is stale: run `cargo run -- crd > crds/vaultsecret.yaml`"
    );
}

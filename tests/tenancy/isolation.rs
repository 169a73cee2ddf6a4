//! Acceptance 1: a namespace reads only what its own ServiceAccount's Vault role allows.

use serde_json::json;

use crate::team::{SA, Team, assert_no_secret, wait_synced};

#[tokio::test]
async fn a_namespace_asking_for_another_namespaces_path_is_denied_and_the_owner_is_unaffected() {
    let (a, b) = tokio::join!(Team::new("team-a"), Team::new("team-b"));
    let bao = &a.t.op.bao;
    let a_path = a.t.path("db");
    bao.put(&a_path, &[("password", "team-a-only")]);
    bao.put(&b.t.path("db"), &[("password", "team-b-own")]);

    a.t.create_vs("db", a.spec(&a_path))
        .await
        .expect("create team-a's VaultSecret");
    let before = wait_synced(&a.t, "db", "password", "team-a-only").await;
    a.t.wait_ready("db", "True", "Synced").await;

    // team-b's own identity, team-a's path: Vault's policy says no.
    b.t.create_vs("steal", b.spec(&a_path))
        .await
        .expect("create the stealing VaultSecret");
    // team-b's identity works for team-b's own path, so the denial is about the path alone.
    b.t.create_vs("own", b.spec(&b.t.path("db")))
        .await
        .expect("create team-b's VaultSecret");
    // Naming team-a's role from team-b: the role is bound to team-a's namespace, Vault refuses.
    let borrow = json!({
        "auth": {"kubernetes": {"role": a.role, "serviceAccountName": SA}},
        "sources": [{"kv": {"mount": "secret", "path": a_path}}],
    });
    b.t.create_vs("borrow", borrow)
        .await
        .expect("create the borrowing VaultSecret");

    b.t.wait_ready("steal", "False", "PermissionDenied").await;
    wait_synced(&b.t, "own", "password", "team-b-own").await;
    b.t.wait_ready("borrow", "False", "LoginFailed").await;
    assert_no_secret(&b.t, "steal").await;
    assert_no_secret(&b.t, "borrow").await;

    let after = a.t.secrets().get("db").await.expect("team-a's Secret is still there");
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "team-a's Secret was rewritten while team-b was denied"
    );
    assert_eq!(after.data, before.data);
    a.t.wait_ready("db", "True", "Synced").await;
}

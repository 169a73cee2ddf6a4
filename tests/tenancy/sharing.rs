//! Acceptance 3: VaultSecrets sharing an identity share one login.

use serde_json::json;

use crate::common::auth::{kubernetes_logins, succeeded};
use crate::team::Team;

const SHARING: usize = 50;

#[tokio::test]
async fn fifty_vaultsecrets_sharing_one_identity_log_in_once() {
    let team = Team::new("shared").await;
    let bao = &team.t.op.bao;
    let path = team.t.path("common");
    bao.put(&path, &[("endpoint", "shared")]);
    let spec = json!({
        "auth": team.auth(),
        "sources": [{"kv": {"mount": "secret", "path": path}}],
        "refresh": {"interval": "1h"},
    });
    // Created together, so their first syncs race for the login.
    let names: Vec<String> = (0..SHARING).map(|i| format!("s{i:02}")).collect();
    futures::future::try_join_all(names.iter().map(|name| team.t.create_vs(name, spec.clone())))
        .await
        .expect("create VaultSecrets");
    for name in &names {
        team.t.wait_ready(name, "True", "Synced").await;
    }

    let logins = kubernetes_logins(bao, &team.role);
    let failed = logins.iter().filter(|e| !succeeded(e)).count();
    assert_eq!(
        logins.len(),
        1,
        "{SHARING} VaultSecrets sharing role {} caused {} logins ({failed} refused) instead of one",
        team.role,
        logins.len()
    );
    // The operator counts real logins (and only those) in its metrics.
    let (_, scrape) = team.t.op.get("/metrics").await;
    let counted = scrape.lines().find_map(|l| {
        l.strip_prefix("vaultsync_vault_logins_total{result=\"success\"} ")?
            .parse::<f64>()
            .ok()
    });
    assert!(
        counted.is_some_and(|n| n >= 1.0),
        "vaultsync_vault_logins_total{{result=\"success\"}} = {counted:?}"
    );
}

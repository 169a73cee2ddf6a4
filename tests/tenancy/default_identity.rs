//! Acceptance 6: without `spec.auth`, only the allow-listed namespace may use the operator's own
//! identity.

use rand::distr::{Alphanumeric, SampleString};
use serde_json::json;

use crate::common::TestNs;
use crate::team::{ALLOWED_NS, assert_no_secret, ns, op, wait_synced};

#[tokio::test]
async fn without_spec_auth_only_the_allow_listed_namespace_syncs_with_the_operators_identity() {
    let other = ns("no-default").await;
    let allowed = TestNs::fixed_in(op(), ALLOWED_NS).await;
    // The allow-listed namespace outlives this run: a name of this run's own inside it.
    let name = format!(
        "default-{}",
        Alphanumeric.sample_string(&mut rand::rng(), 6).to_lowercase()
    );
    let bao = &other.op.bao;
    bao.put(&other.path("cfg"), &[("mode", "refused")]);
    bao.put(&allowed.path(&name), &[("mode", "operator-identity")]);
    let spec = |path: String| json!({"sources": [{"kv": {"mount": "secret", "path": path}}]});
    other
        .create_vs("cfg", spec(other.path("cfg")))
        .await
        .expect("create VaultSecret");
    allowed
        .create_vs(&name, spec(allowed.path(&name)))
        .await
        .expect("create VaultSecret");

    other.wait_ready("cfg", "False", "NoVaultIdentity").await;
    assert_no_secret(&other, "cfg").await;

    wait_synced(&allowed, &name, "mode", "operator-identity").await;
    allowed.wait_ready(&name, "True", "Synced").await;
}

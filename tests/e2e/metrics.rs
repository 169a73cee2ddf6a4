//! The operator's `/metrics`, `/healthz` and `/readyz`, scraped over HTTP during a scenario.

use serde_json::json;

use crate::common::{TestNs, has_value, within};

/// The value of the series `name{labels}` in a Prometheus text scrape (labels given in the
/// order Prometheus prints them: alphabetical).
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn metrics_follow_a_sync_a_rotation_and_a_failure_and_vanish_with_the_vaultsecret() {
    let t = TestNs::new("metrics").await;
    let (ns, op) = (t.ns.clone(), t.op);
    assert_eq!(op.get("/healthz").await.0, 200);
    let ready = within("/readyz to answer 200", async {
        loop {
            if op.get("/readyz").await.0 == 200 {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });
    assert!(ready.await);

    op.bao.put(&t.path("m"), &[("k", "one")]);
    let spec = json!({"sources": [{"kv": {"mount": "secret", "path": t.path("m")}}], "refresh": {"interval": "10s"}});
    t.create_vs("good", spec).await.expect("create good");
    t.create_vs(
        "bad",
        json!({"sources": [{"kv": {"mount": "secret", "path": t.path("absent")}}]}),
    )
    .await
    .expect("create bad");
    t.wait_secret("good", "first sync", has_value("k", "one")).await;
    t.wait_ready("bad", "False", "NotFound").await;
    op.bao.put(&t.path("m"), &[("k", "two")]);
    t.wait_secret("good", "rotation", has_value("k", "two")).await;
    t.wait_ready("good", "True", "Synced").await;

    let good = format!("{{name=\"good\",namespace=\"{ns}\"}}");
    let bad = format!("{{name=\"bad\",namespace=\"{ns}\"}}");
    let (status, scrape) = op.get("/metrics").await;
    assert_eq!(status, 200);
    let expect = |series: String, check: &dyn Fn(f64) -> bool| {
        let value = sample(&scrape, &series);
        assert!(value.is_some_and(check), "{series} = {value:?}");
    };
    expect(format!("vaultsync_secret_ready{good}"), &|v| v == 1.0);
    expect(format!("vaultsync_secret_ready{bad}"), &|v| v == 0.0);
    expect(format!("vaultsync_secret_last_success_timestamp_seconds{good}"), &|v| {
        v > 1.7e9
    });
    // A first write is not a rotation: no series for it.
    assert!(!scrape.contains("reason=\"created\""), "{scrape}");
    expect(
        format!("vaultsync_rotations_total{{name=\"good\",namespace=\"{ns}\",reason=\"changed\"}}"),
        &|v| v == 1.0,
    );
    expect(
        "vaultsync_syncs_total{reason=\"Synced\",result=\"success\"}".into(),
        &|v| v >= 2.0,
    );
    // A failed sync says why: the same reason as its Ready condition.
    expect(
        "vaultsync_syncs_total{reason=\"NotFound\",result=\"error\"}".into(),
        &|v| v >= 1.0,
    );
    expect("vaultsync_sync_duration_seconds_count".into(), &|v| v >= 3.0);
    expect(
        "vaultsync_vault_requests_total{operation=\"read\",status=\"2xx\"}".into(),
        &|v| v >= 2.0,
    );
    expect(
        "vaultsync_vault_requests_total{operation=\"read\",status=\"4xx\"}".into(),
        &|v| v >= 1.0,
    );
    expect(
        "vaultsync_vault_request_duration_seconds_count{operation=\"read\"}".into(),
        &|v| v >= 3.0,
    );
    // The operator's own token needs no login; tests/tenancy checks the login counter.
    expect("vaultsync_managed_secrets".into(), &|v| v >= 1.0);
    expect(
        format!("vaultsync_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION")),
        &|v| v == 1.0,
    );

    t.vaultsecrets()
        .delete("good", &Default::default())
        .await
        .expect("delete good");
    within("the deleted VaultSecret's series to go", async {
        loop {
            let (_, scrape) = op.get("/metrics").await;
            if !scrape.contains(&format!("name=\"good\",namespace=\"{ns}\"")) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    })
    .await;
}

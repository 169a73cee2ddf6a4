//! A rate limit is followed, not fought: fifty VaultSecrets refreshing every 10 s read from a KV
//! mount that an OpenBao rate-limit quota (`sys/quotas/rate-limit`) holds to 5 requests/s — what
//! they ask for, in aggregate. The operator's one limiter for that server slows down on 429 and
//! speeds up on success: after a minute, refusals are a few percent of its reads, every object is
//! Ready, and once the quota is removed the limit is lifted.

use std::time::Duration;

use kube::ResourceExt;
use kube::api::ListParams;
use serde_json::json;

use crate::OUTAGE;
use crate::common::{TestNs, captured_logs, is_ready, poll_for};

const COUNT: usize = 50;

/// The operator's KV reads so far: (all, refused with 429).
async fn reads(t: &TestNs) -> (f64, f64) {
    let (_, metrics) = t.op.get("/metrics").await;
    let mut all = 0.0;
    let mut refused = 0.0;
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("vaultsync_vault_requests_total{operation=\"read\",status=\"") else {
            continue;
        };
        let (status, value) = rest.split_once("\"} ").expect("a sample");
        let value: f64 = value.parse().expect("a number");
        all += value;
        if status == "429" {
            refused += value;
        }
    }
    (all, refused)
}

async fn ready_count(t: &TestNs) -> usize {
    let all = t.vaultsecrets().list(&ListParams::default()).await.expect("list");
    all.items.iter().filter(|vs| is_ready(vs)).count()
}

#[tokio::test]
async fn a_rate_limit_quota_is_followed_with_few_refusals_and_lifted_when_it_goes() {
    let _turn = OUTAGE.lock().await;
    let t = TestNs::new("ratelimit").await;
    let bao = &t.op.bao;
    let mount = t.ns.clone();
    bao.run(&["secrets", "enable", &format!("-path={mount}"), "-version=2", "kv"]);
    for i in 0..COUNT {
        bao.put_in(&mount, &format!("p{i}"), &[("password", &format!("v{i}"))]);
        let spec = json!({
            "sources": [{"kv": {"mount": mount, "path": format!("p{i}")}}],
            "refresh": {"interval": "10s"},
        });
        t.create_vs(&format!("app-{i}"), spec)
            .await
            .expect("create VaultSecret");
    }
    poll_for("all fifty to be Ready", Duration::from_secs(120), async || {
        (ready_count(&t).await == COUNT).then_some(())
    })
    .await;

    let quota = format!("sys/quotas/rate-limit/{}", t.ns);
    bao.run(&["write", &quota, "rate=5", "interval=1s", &format!("path={mount}/")]);
    let start = reads(&t).await;
    // A measurement window, not a synchronisation: the limiter has a minute to settle.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let settled = reads(&t).await;
    assert!(
        settled.1 > start.1,
        "the quota refused nothing: the test does not exercise a rate limit"
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    let end = reads(&t).await;
    let (sent, refused) = (end.0 - settled.0, end.1 - settled.1);
    let share = refused / sent;
    eprintln!(
        "first minute: {} reads, {} refused; second minute: {sent} reads, {refused} refused ({:.1} %)",
        settled.0 - start.0,
        settled.1 - start.1,
        share * 100.0
    );
    assert!(share < 0.05, "{refused} of {sent} reads refused in the second minute");
    // Fifty objects every 10 s ask for 5/s; at least half of that gets through.
    assert!(sent >= 150.0, "only {sent} reads in a minute");
    // Under the quota a refused refresh makes its object Ready=False until its retry a second or
    // two later, so "every object eventually Ready" is per object: each must be seen Ready.
    let mut seen = std::collections::BTreeSet::new();
    let mut missing = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        let all = t.vaultsecrets().list(&ListParams::default()).await.expect("list");
        missing.clear();
        for vs in &all.items {
            if is_ready(vs) {
                seen.insert(vs.name_any());
            } else if !seen.contains(&vs.name_any()) {
                let reason = vs.status.as_ref().and_then(|s| s.ready()).map(|c| c.reason.clone());
                missing.push(format!("{}: {reason:?}", vs.name_any()));
            }
        }
        if seen.len() == COUNT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(seen.len(), COUNT, "never seen Ready under the quota: {missing:?}");

    bao.run(&["delete", &quota]);
    poll_for(
        "all fifty Ready within one interval of the quota's removal",
        Duration::from_secs(10),
        async || (ready_count(&t).await == COUNT).then_some(()),
    )
    .await;
    poll_for("the limit to be lifted", Duration::from_secs(120), async || {
        captured_logs()
            .contains("no longer rate-limits this operator")
            .then_some(())
    })
    .await;
}

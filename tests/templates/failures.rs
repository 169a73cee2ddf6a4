//! Failing templates: a precise reason, the last good Secret kept, and bounded work.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{TestNs, has_value};
use crate::{patch_spec, ready_message};

#[tokio::test]
async fn a_syntax_error_is_a_template_error_naming_the_key_and_the_secret_is_kept_until_fixed() {
    let t = TestNs::new("tplerr").await;
    let path = t.path("db");
    t.op.bao.put(&path, &[("password", "hidden-pw")]);
    let spec = json!({
        "sources": [{"kv": {"mount": "secret", "path": path}}],
        "destination": {"templates": {"URL": "db://{{ password }}"}},
    });
    t.create_vs("db", spec).await.expect("create VaultSecret");
    let good = t
        .wait_secret("db", "the first render", has_value("URL", "db://hidden-pw"))
        .await;
    t.wait_ready("db", "True", "Synced").await;

    patch_spec(
        &t,
        "db",
        json!({"destination": {"templates": {"URL": "db://\n{{ password }"}}}),
    )
    .await;
    let vs = t.wait_ready("db", "False", "TemplateError").await;
    let message = ready_message(&vs);
    assert!(
        message.contains("template URL") && message.contains("line 2"),
        "{message}"
    );
    assert!(!message.contains("hidden-pw"), "{message}");
    let kept = t.secrets().get("db").await.expect("get Secret");
    assert_eq!(
        kept.metadata.resource_version, good.metadata.resource_version,
        "Secret touched"
    );

    patch_spec(
        &t,
        "db",
        json!({"destination": {"templates": {"URL": "db2://{{ password }}"}}}),
    )
    .await;
    t.wait_secret("db", "the fixed render", has_value("URL", "db2://hidden-pw"))
        .await;
    t.wait_ready("db", "True", "Synced").await;
}

#[tokio::test]
async fn a_huge_output_or_a_runaway_loop_fails_quickly_with_a_clear_reason() {
    let t = TestNs::new("tplbound").await;
    let path = t.path("s");
    t.op.bao.put(&path, &[("k", "v")]);
    let huge = "{% for i in range(3) %}{{ 'x' * 500000 }}{% endfor %}";
    let runaway = "{% for a in range(100000) %}{% for b in range(100000) %}{{ b }}{% endfor %}{% endfor %}";
    let started = Instant::now();
    for (name, text) in [("huge", huge), ("runaway", runaway)] {
        let spec = json!({
            "sources": [{"kv": {"mount": "secret", "path": path}}],
            "destination": {"templates": {"OUT": text}},
        });
        t.create_vs(name, spec).await.expect("create VaultSecret");
    }
    let message = ready_message(&t.wait_ready("huge", "False", "TemplateError").await);
    assert!(
        message.contains("template OUT") && message.contains("exceeds 1048576 bytes"),
        "{message}"
    );
    let message = ready_message(&t.wait_ready("runaway", "False", "TemplateError").await);
    assert!(
        message.contains("template OUT") && message.contains("too many steps"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert!(t.secrets().get_opt("huge").await.expect("get").is_none());
}

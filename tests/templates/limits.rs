//! Templates render in a child process under memory, CPU and time limits: a hostile template
//! fails there, with a clear reason, and the operator carries on.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;
use vaultsync::template::{self, Context, SourceContext};

use crate::common::{TestNs, has_value};
use crate::{patch_spec, ready_message};

/// Doubles a string 40 times: a terabyte, were it not for the child's memory limit.
const BOMB: &str = "{% set ns = namespace(s=password) %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}";

/// Within fuel and far from the memory limit, but each step copies 20 MB: seconds of CPU.
const SLOW: &str = "{% set s = 'x' * 20000000 %}{% for i in range(2000) %}{% if (s | replace('x', 'y') | length) == 0 %}{% endif %}{% endfor %}";

/// The operator's (this test process's) peak resident memory, from /proc/self/status.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    kib * 1024
}

#[tokio::test]
async fn a_string_doubling_template_hits_the_memory_limit_and_the_operator_carries_on() {
    let t = TestNs::new("tplbomb").await;
    let path = t.path("db");
    t.op.bao.put(&path, &[("password", "bomb-canary-pw")]);
    let spec = json!({
        "sources": [{"kv": {"mount": "secret", "path": path}}],
        "destination": {"templates": {"URL": "db://{{ password }}"}},
    });
    t.create_vs("db", spec).await.expect("create VaultSecret");
    let good = t
        .wait_secret("db", "the first render", has_value("URL", "db://bomb-canary-pw"))
        .await;

    patch_spec(&t, "db", json!({"destination": {"templates": {"URL": BOMB}}})).await;
    let vs = t.wait_ready("db", "False", "TemplateError").await;
    let message = ready_message(&vs);
    assert!(
        message.starts_with("template URL: rendering exceeded its memory limit of 256 MiB"),
        "{message}"
    );
    assert!(!message.contains("bomb-canary"), "{message}");
    let kept = t.secrets().get("db").await.expect("get Secret");
    assert_eq!(
        kept.metadata.resource_version, good.metadata.resource_version,
        "Secret touched"
    );
    assert_eq!(kept.data, good.data);

    // The operator is alive, never held the bomb's strings, and still syncs.
    let peak = peak_rss_bytes();
    assert!(
        peak < 200 * 1024 * 1024,
        "the operator's peak RSS is {} MiB",
        peak / 1024 / 1024
    );
    assert_eq!(t.op.get("/healthz").await.0, 200);
    let other = t.path("other");
    t.op.bao.put(&other, &[("user", "u")]);
    let spec = json!({
        "sources": [{"kv": {"mount": "secret", "path": other}}],
        "destination": {"templates": {"WHO": "{{ user }}@{{ metadata.namespace }}"}},
    });
    t.create_vs("other", spec).await.expect("create VaultSecret");
    let want = format!("u@{}", t.ns);
    t.wait_secret("other", "a render after the bomb", has_value("WHO", &want))
        .await;
}

fn context(password: &str) -> Context {
    let data: BTreeMap<String, Vec<u8>> = [("password".to_owned(), password.as_bytes().to_vec())].into();
    Context {
        data: data.clone(),
        sources: vec![SourceContext {
            name: "db".into(),
            index: 0,
            kind: "kv",
            version: Some(1),
            data,
        }],
        name: "shop".into(),
        namespace: "team-a".into(),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
    }
}

async fn render(templates: &[(&str, &str)], ctx: &Context) -> Result<BTreeMap<String, Vec<u8>>, template::Error> {
    template::set_program(env!("CARGO_BIN_EXE_vaultsync"));
    let templates = templates.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    template::render(&templates, ctx).await
}

#[tokio::test]
async fn long_work_on_huge_values_hits_the_time_limit() {
    let started = Instant::now();
    let err = render(&[("A", "{{ password }}"), ("SLOW", SLOW)], &context("pw"))
        .await
        .unwrap_err();
    assert_eq!(err.key, "SLOW", "{err}");
    assert!(
        err.message
            .starts_with("rendering exceeded its time limit of 2 s of CPU"),
        "{err}"
    );
    assert!(
        started.elapsed() < template::TIME_LIMIT + Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_rendering_process_that_fails_never_reports_a_value() {
    let canary = "canary-7d1f0b";
    let ctx = context(canary);
    for text in [
        BOMB,
        "{{ password + 1 }}",
        "{{ password | b64decode }}",
        "{{ password.x }}",
    ] {
        let err = render(&[("OUT", text)], &ctx).await.unwrap_err();
        assert_eq!(err.key, "OUT");
        assert!(!err.to_string().contains(canary), "{text}: {err}");
    }
    let out = render(
        &[
            ("OUT", "{{ password | upper }}"),
            ("BIN", "{{ data.password | b64encode }}"),
        ],
        &ctx,
    )
    .await
    .expect("render");
    assert_eq!(out["OUT"], canary.to_uppercase().as_bytes());
    assert_eq!(out["BIN"], b"Y2FuYXJ5LTdkMWYwYg==");
}

/// Not a test: the cost of one small render through the child process, for sizing. Run with
/// `cargo test --test templates render_cost -- --ignored --nocapture`; set `RENDER_PROGRAM` to
/// measure another build of `vaultsync` (e.g. `target/release/vaultsync`).
#[tokio::test]
#[ignore = "a measurement, not a test"]
async fn render_cost() {
    if let Ok(program) = std::env::var("RENDER_PROGRAM") {
        template::set_program(program);
    }
    let ctx = context("p@ss word");
    let templates = [(
        "DATABASE_URL",
        "postgres://shop:{{ password | urlencode }}@db.{{ metadata.namespace }}:5432/shop",
    )];
    render(&templates, &ctx).await.expect("warm-up render");
    let mut times: Vec<Duration> = Vec::new();
    let cpu_before = (children_cpu(), cpu(libc::RUSAGE_SELF));
    for _ in 0..100 {
        let started = Instant::now();
        render(&templates, &ctx).await.expect("render");
        times.push(started.elapsed());
    }
    let child_cpu = (children_cpu() - cpu_before.0) / 100;
    let own_cpu = (cpu(libc::RUSAGE_SELF) - cpu_before.1) / 100;
    times.sort();
    println!(
        "one small template via the child, 100 renders: median {:?}, p90 {:?}, max {:?}; CPU per render: child {child_cpu:?}, this process {own_cpu:?}",
        times[50], times[90], times[99]
    );
}

/// User and system CPU time of this process's waited-for children.
fn children_cpu() -> Duration {
    cpu(libc::RUSAGE_CHILDREN)
}

/// User and system CPU time of `who` (`RUSAGE_SELF`, `RUSAGE_CHILDREN`).
fn cpu(who: libc::c_int) -> Duration {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

#[test]
fn the_rendering_process_limits_itself_before_it_reads_its_request() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vaultsync"))
        .arg("render-templates")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn vaultsync render-templates");
    let limits = format!("/proc/{}/limits", child.id());
    let address_space = format!("Max address space         {}", template::MEMORY_LIMIT);
    // The last limit it sets (src/template/limits.rs): once it shows, all are set.
    let file_size = "Max file size             0                    0";
    let started = Instant::now();
    // It waits for its request (stdin stays open) with its limits already set.
    let text = loop {
        let text = std::fs::read_to_string(&limits).expect("read the child's limits");
        if text.contains(file_size) || started.elapsed() > Duration::from_secs(10) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    drop(child.stdin.take());
    child.wait().expect("wait for the child");
    assert!(text.contains(file_size), "{text}");
    assert!(text.contains(&address_space), "{text}");
    assert!(
        text.contains("Max cpu time              2                    3"),
        "{text}"
    );
    assert!(
        text.contains("Max core file size        0                    0"),
        "{text}"
    );
}

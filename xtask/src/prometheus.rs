//! Prometheus (Debian's package) scraping targets of the environment, for tests whose point is the
//! metrics as an SRE sees them: PromQL against a real server.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::http;
use crate::process::{Proc, reserve_port};

/// Process name of Prometheus (log and pid file).
pub(crate) const PROMETHEUS: &str = "prometheus";
/// Debian's `prometheus` binary.
pub const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";
/// Debian's `promtool`.
pub const PROMTOOL_BIN: &str = "/usr/bin/promtool";
/// How often Prometheus scrapes (and evaluates): short, so tests see changes within seconds.
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(2);

/// Starts Prometheus on a free loopback port, scraping `/metrics` of `targets` (`HOST:PORT`)
/// as job `job`, with its data under `DIR/prometheus`; returns it with its address once it is
/// ready.
pub(crate) fn start(dir: &Path, job: &str, targets: &[String], detached: bool) -> Result<(Proc, SocketAddr)> {
    let (port, listener) = reserve_port()?;
    drop(listener);
    let root = dir.join("prometheus");
    fs::create_dir_all(root.join("data"))?;
    let config = root.join("prometheus.yml");
    let interval = format!("{}s", SCRAPE_INTERVAL.as_secs());
    let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    fs::write(
        &config,
        format!(
            "global: {{scrape_interval: {interval}, evaluation_interval: {interval}}}\n\
             scrape_configs:\n  - job_name: {job}\n    honor_labels: true\n    \
             static_configs: [{{targets: [{}]}}]\n",
            targets.join(", ")
        ),
    )?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut cmd = Command::new(PROMETHEUS_BIN);
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", root.join("data").display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--log.level=warn");
    let mut proc = Proc::spawn(dir, PROMETHEUS, cmd, detached)?;
    proc.wait_until("Prometheus /-/ready", Duration::from_secs(60), || {
        Ok(http::request(addr, "GET", "/-/ready", None, None)?.status == 200)
    })?;
    Ok((proc, addr))
}

/// The result of the instant PromQL query `query` at `addr` (the `data.result` array).
pub fn query(addr: SocketAddr, query: &str) -> Result<Vec<serde_json::Value>> {
    let path = format!("/api/v1/query?query={}", encode(query));
    let response = http::request(addr, "GET", &path, None, None)?;
    let body = response.json().context("Prometheus answered no JSON")?;
    if response.status != 200 || body["status"] != "success" {
        bail!(
            "Prometheus query {query:?} answered {}: {}",
            response.status,
            response.body
        );
    }
    Ok(body["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(encode(r#"up{job="x"} == 1"#), "up%7Bjob%3D%22x%22%7D%20%3D%3D%201");
    }
}

//! The OpenBao side: the KV secrets the benchmark reads, and the requests counted in the audit log.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::json;

use crate::Env;
use crate::http;

/// Writes `paths` KV v2 secrets `secret/bench/pN`.
pub fn write_paths(env: &Env, paths: usize) -> Result<()> {
    let addr: SocketAddr = env
        .vault_addr
        .trim_start_matches("http://")
        .parse()
        .context("parsing the OpenBao address")?;
    for p in 0..paths {
        let body = json!({ "data": { "username": "bench", "password": format!("password-{p:08}") } });
        let response = http::request(
            addr,
            "POST",
            &format!("/v1/secret/data/bench/p{p}"),
            Some(&env.vault_token),
            Some(&body.to_string()),
        )?;
        if response.status / 100 != 2 {
            bail!("writing secret/bench/p{p}: HTTP {}", response.status);
        }
    }
    Ok(())
}

/// Requests OpenBao received, by kind, from its audit log.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Requests {
    /// Logins (`auth/*/login`).
    pub logins: u64,
    /// KV reads (`read` on `secret/data/*`).
    pub kv_reads: u64,
    /// Everything else (token lookups and renewals, `sys/*`, writes).
    pub other: u64,
}

/// A position in the audit log, to count the requests after it.
pub struct AuditLog {
    path: PathBuf,
}

impl AuditLog {
    pub fn of(env: &Env) -> AuditLog {
        AuditLog {
            path: env.dir.join("openbao-audit.log"),
        }
    }

    /// The current end of the log.
    pub fn mark(&self) -> Result<u64> {
        Ok(std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0))
    }

    /// Requests logged from `from` to `to` (byte offsets from [`AuditLog::mark`]).
    pub fn count(&self, from: u64, to: u64) -> Result<Requests> {
        count_between(&self.path, from, to)
    }
}

fn count_between(path: &Path, from: u64, to: u64) -> Result<Requests> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    file.seek(SeekFrom::Start(from))?;
    let mut reader = BufReader::new(file);
    let mut requests = Requests::default();
    let mut offset = from;
    let mut line = String::new();
    while offset < to {
        line.clear();
        let read = reader.read_line(&mut line)?;
        if read == 0 {
            break;
        }
        offset += read as u64;
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if entry["type"] != "request" {
            continue;
        }
        let path = entry["request"]["path"].as_str().unwrap_or_default();
        let operation = entry["request"]["operation"].as_str().unwrap_or_default();
        if path.starts_with("auth/") && path.contains("/login") {
            requests.logins += 1;
        } else if operation == "read" && path.starts_with("secret/data/") {
            requests.kv_reads += 1;
        } else {
            requests.other += 1;
        }
    }
    Ok(requests)
}

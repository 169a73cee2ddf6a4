//! The OpenBao side: the KV secrets the benchmark reads, and the requests counted in the audit log.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;

use xtask::Env;
use xtask::http;

/// The KV v2 path (under `secret`) the cycle's probes read, apart from the bulk paths (and not
/// under their prefix `bench/p`, so the two are counted apart).
pub const PROBE_PATH: &str = "probe/bench";

/// Writes `paths` KV v2 secrets `secret/bench/pN`, and [`PROBE_PATH`].
pub fn write_paths(env: &Env, paths: usize) -> Result<()> {
    for p in 0..paths {
        write(env, &format!("bench/p{p}"), &password(p))?;
    }
    write(env, PROBE_PATH, "probe")
}

/// The password the benchmark first writes at `secret/bench/p{p}`.
pub fn password(p: usize) -> String {
    format!("password-{p:08}")
}

/// Writes a new version of KV v2 `secret/{path}` with `password`.
pub fn write(env: &Env, path: &str, password: &str) -> Result<()> {
    let body = json!({ "data": { "username": "bench", "password": password } });
    post(env, &format!("secret/data/{path}"), &body)
}

/// `POST /v1/{path}` to OpenBao with the root token.
fn post(env: &Env, path: &str, body: &serde_json::Value) -> Result<()> {
    let addr: SocketAddr = env
        .vault_addr
        .trim_start_matches("http://")
        .parse()
        .context("parsing the OpenBao address")?;
    let response = http::request(
        addr,
        "POST",
        &format!("/v1/{path}"),
        Some(&env.vault_token),
        Some(&body.to_string()),
    )?;
    if response.status / 100 != 2 {
        bail!("writing {path}: HTTP {}", response.status);
    }
    Ok(())
}

/// The ServiceAccount OpenBao reviews tokens with, allowed to by `system:auth-delegator`.
const REVIEWER: &str = "\
apiVersion: v1
kind: ServiceAccount
metadata: {name: vault-reviewer, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: vault-reviewer-auth-delegator}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:auth-delegator}
subjects: [{kind: ServiceAccount, name: vault-reviewer, namespace: kube-system}]
";

/// Kubernetes auth in OpenBao and one role per entry of `roles`, each for ServiceAccount
/// `service_account` of the namespace of the same name, reading the bench paths.
pub fn kubernetes_auth(env: &Env, roles: &[String], service_account: &str) -> Result<()> {
    let manifest = env.dir.join("bench-reviewer.yaml");
    std::fs::write(&manifest, REVIEWER)?;
    let kubectl = |args: &[&str]| -> Result<String> {
        let out = env.kubectl().args(args).output()?;
        if !out.status.success() {
            bail!("kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    kubectl(&["apply", "-f", &manifest.to_string_lossy()])?;
    let reviewer_jwt = kubectl(&[
        "create",
        "token",
        "vault-reviewer",
        "-n",
        "kube-system",
        "--duration=24h",
    ])?;
    post(env, "sys/auth/kubernetes", &json!({ "type": "kubernetes" }))?;
    post(
        env,
        "auth/kubernetes/config",
        &json!({
            "kubernetes_host": env.api_server_url(),
            "kubernetes_ca_cert": env.ca_pem(),
            "token_reviewer_jwt": reviewer_jwt,
        }),
    )?;
    post(
        env,
        "sys/policies/acl/bench-read",
        &json!({ "policy": "path \"secret/data/bench/*\" { capabilities = [\"read\"] }" }),
    )?;
    for role in roles {
        post(
            env,
            &format!("auth/kubernetes/role/{role}"),
            &json!({
                "bound_service_account_names": service_account,
                "bound_service_account_namespaces": role,
                "audience": "vault",
                "token_policies": "bench-read",
                "token_ttl": "1h",
            }),
        )?;
    }
    Ok(())
}

/// Requests OpenBao received, by kind, from its audit log.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Requests {
    /// Logins (`auth/*/login`).
    pub logins: u64,
    /// KV reads (`read` on `secret/data/*`).
    pub kv_reads: u64,
    /// Everything else (token lookups and renewals, `sys/*`, writes).
    pub other: u64,
    /// KV reads by path (`secret/data/...`).
    #[serde(skip)]
    pub reads_by_path: BTreeMap<String, u64>,
}

impl Requests {
    /// KV reads of paths under `secret/data/{prefix}`, how many distinct paths they were, and
    /// how many of those paths were read more than once.
    pub fn reads_under(&self, prefix: &str) -> (u64, usize, usize) {
        let full = format!("secret/data/{prefix}");
        let under = self.reads_by_path.iter().filter(|(p, _)| p.starts_with(&full));
        let again = under.clone().filter(|(_, n)| **n > 1).count();
        (under.clone().map(|(_, n)| n).sum(), under.count(), again)
    }
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
            *requests.reads_by_path.entry(path.to_owned()).or_default() += 1;
        } else {
            requests.other += 1;
        }
    }
    Ok(requests)
}

//! A non-dev OpenBao server with persistent (raft) storage, so its data survives a stop and start.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::binaries::Binaries;
use crate::certs::write_private;
use crate::http;
use crate::process::Proc;

/// Process name of the OpenBao server (log and pid file).
pub(crate) const OPENBAO: &str = "openbao";

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The unseal key and root token written by `sys/init`, kept in `DIR/openbao/init.json` (0600).
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    pub unseal_key: String,
    pub root_token: String,
}

impl Keys {
    /// Reads the keys of an initialised server.
    pub fn load(dir: &Path) -> Result<Keys> {
        let path = init_path(dir);
        let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let init: serde_json::Value = serde_json::from_str(&text)?;
        let field = |name: &str| {
            init[name]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("{} lacks {name}", path.display()))
        };
        Ok(Keys {
            unseal_key: field("unseal_key")?,
            root_token: field("root_token")?,
        })
    }
}

/// Writes the server configuration: API on `port`, cluster (raft) traffic on `cluster_port`,
/// data under `DIR/openbao/data`.
///
/// OpenBao 2.x has no `file` storage backend any more (and no mlock setting); a single-node
/// integrated (raft) storage keeps the data across restarts just as well.
pub(crate) fn write_config(dir: &Path, port: u16, cluster_port: u16) -> Result<()> {
    let root = dir.join("openbao");
    fs::create_dir_all(root.join("data"))?;
    let config = format!(
        r#"storage "raft" {{
  path    = "{data}"
  node_id = "vaultsync"
  # Raft's production timeouts (5 s heartbeat, 5–10 s election) only delay a single node's
  # start; 1 is the tightest setting.
  performance_multiplier = 1
}}

listener "tcp" {{
  address         = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cluster_port}"
  tls_disable     = true
}}

# Tests count the requests the operator makes (reads per refresh, logins) from this log.
audit "file" "file" {{
  options {{
    file_path = "{audit}"
  }}
}}

api_addr     = "http://127.0.0.1:{port}"
cluster_addr = "https://127.0.0.1:{cluster_port}"
ui           = false
"#,
        data = root.join("data").display(),
        audit = dir.join("openbao-audit.log").display(),
    );
    fs::write(config_path(dir), config).context("writing the OpenBao config")
}

/// Starts the server (configured by [`write_config`]) and waits until it answers HTTP.
pub(crate) fn start(dir: &Path, bins: &Binaries, port: u16, detached: bool) -> Result<Proc> {
    let mut cmd = Command::new(&bins.bao);
    cmd.arg("server").arg(format!("-config={}", config_path(dir).display()));
    let mut proc = Proc::spawn(dir, OPENBAO, cmd, detached)?;
    let addr = addr(port);
    proc.wait_until("the OpenBao listener", READY_TIMEOUT, || {
        Ok(http::request(addr, "GET", "/v1/sys/health", None, None).is_ok())
    })?;
    Ok(proc)
}

/// Initialises a fresh server with one key share; stores and returns the keys.
pub(crate) fn initialize(dir: &Path, port: u16) -> Result<Keys> {
    let body = json!({ "secret_shares": 1, "secret_threshold": 1 }).to_string();
    let response = http::request(addr(port), "PUT", "/v1/sys/init", None, Some(&body))?;
    if response.status != 200 {
        bail!("OpenBao sys/init answered {}: {}", response.status, response.body);
    }
    let init = response.json()?;
    let keys = Keys {
        unseal_key: init["keys_base64"][0]
            .as_str()
            .context("sys/init returned no key")?
            .to_owned(),
        root_token: init["root_token"]
            .as_str()
            .context("sys/init returned no root token")?
            .to_owned(),
    };
    let stored = json!({ "unseal_key": keys.unseal_key, "root_token": keys.root_token });
    write_private(&init_path(dir), &stored.to_string())?;
    Ok(keys)
}

/// Unseals the server and waits until it is active and the KV v2 mount at `secret/` serves
/// requests (when it exists).
pub(crate) fn unseal(proc: &mut Proc, port: u16, keys: &Keys) -> Result<()> {
    let body = json!({ "key": keys.unseal_key }).to_string();
    let response = http::request(addr(port), "PUT", "/v1/sys/unseal", None, Some(&body))?;
    if response.status != 200 || response.json()?["sealed"] != false {
        bail!("OpenBao sys/unseal answered {}: {}", response.status, response.body);
    }
    proc.wait_until("OpenBao to become active", READY_TIMEOUT, || {
        Ok(http::request(addr(port), "GET", "/v1/sys/health", None, None)?.status == 200)
    })?;
    wait_for_kv2(proc, port, &keys.root_token)
}

/// Seals the server (`sys/seal` with the root token).
pub(crate) fn seal(port: u16, keys: &Keys) -> Result<()> {
    let response = http::request(addr(port), "PUT", "/v1/sys/seal", Some(&keys.root_token), None)?;
    if response.status != 204 && response.status != 200 {
        bail!("OpenBao sys/seal answered {}: {}", response.status, response.body);
    }
    Ok(())
}

/// Unseals a server this process did not start, and waits until it is active.
pub(crate) fn unseal_running(port: u16, keys: &Keys) -> Result<()> {
    let body = json!({ "key": keys.unseal_key }).to_string();
    let response = http::request(addr(port), "PUT", "/v1/sys/unseal", None, Some(&body))?;
    if response.status != 200 {
        bail!("OpenBao sys/unseal answered {}: {}", response.status, response.body);
    }
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    while http::request(addr(port), "GET", "/v1/sys/health", None, None)?.status != 200 {
        if std::time::Instant::now() > deadline {
            bail!("OpenBao did not become active within {READY_TIMEOUT:?} after unsealing");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Mounts KV v2 at `secret/` and KV v1 at `kv1/`.
pub(crate) fn mount_kv(proc: &mut Proc, port: u16, token: &str) -> Result<()> {
    for (path, version) in [("secret", "2"), ("kv1", "1")] {
        let body = json!({ "type": "kv", "options": { "version": version } }).to_string();
        let response = http::request(
            addr(port),
            "POST",
            &format!("/v1/sys/mounts/{path}"),
            Some(token),
            Some(&body),
        )?;
        if !(200..300).contains(&response.status) {
            bail!(
                "mounting kv v{version} at {path}/ answered {}: {}",
                response.status,
                response.body
            );
        }
    }
    wait_for_kv2(proc, port, token)
}

/// Where the PKI engine is mounted.
pub const PKI_MOUNT: &str = "pki";

/// The PKI role tests issue certificates with: `pki/issue/test`.
pub const PKI_ROLE: &str = "test";

/// Mounts the PKI engine at `pki/` (max lease TTL 10 years) with an internal EC root CA
/// "vaultsync test root" and the role [`PKI_ROLE`]: names under `example.test` and `localhost`, IP SANs,
/// EC P-256 keys, TTL up to 1 h (a request may ask for less, e.g. `ttl=30s`).
///
/// Idempotent: an existing mount and root are kept, the role is rewritten. So an environment
/// started by an older xtask gets PKI when a test attaches to it.
pub(crate) fn setup_pki(port: u16, token: &str) -> Result<()> {
    let call = |method: &str, path: &str, body: Option<serde_json::Value>| -> Result<http::Response> {
        let body = body.map(|b| b.to_string());
        http::request(addr(port), method, &format!("/v1/{path}"), Some(token), body.as_deref())
    };
    let ok = |response: http::Response, what: &str| -> Result<http::Response> {
        if !(200..300).contains(&response.status) {
            bail!("{what} answered {}: {}", response.status, response.body);
        }
        Ok(response)
    };
    let mounts = ok(call("GET", "sys/mounts", None)?, "listing the mounts")?;
    if mounts.json()?["data"]["pki/"].is_null() {
        let body = json!({ "type": "pki", "config": { "max_lease_ttl": "87600h" } });
        ok(call("POST", "sys/mounts/pki", Some(body))?, "mounting pki at pki/")?;
    }
    // An empty mount answers the issuer list with 404.
    let issuers = call("GET", "pki/issuers?list=true", None)?;
    if issuers.status != 200 || issuers.json()?["data"]["keys"].as_array().is_none_or(Vec::is_empty) {
        let body = json!({
            "common_name": "vaultsync test root",
            "ttl": "87600h",
            "key_type": "ec",
            "key_bits": 256,
        });
        ok(
            call("POST", "pki/root/generate/internal", Some(body))?,
            "generating the PKI root CA",
        )?;
    }
    let role = json!({
        "allowed_domains": ["example.test", "localhost"],
        "allow_subdomains": true,
        "allow_bare_domains": true,
        "allow_localhost": true,
        "allow_ip_sans": true,
        "key_type": "ec",
        "key_bits": 256,
        "ttl": "1h",
        "max_ttl": "1h",
    });
    ok(
        call("POST", &format!("{PKI_MOUNT}/roles/{PKI_ROLE}"), Some(role))?,
        "writing the PKI role",
    )?;
    Ok(())
}

/// A KV v2 mount rejects requests for a moment after it is mounted or unsealed.
fn wait_for_kv2(proc: &mut Proc, port: u16, token: &str) -> Result<()> {
    let mounts = http::request(addr(port), "GET", "/v1/sys/mounts", Some(token), None)?;
    if mounts.status != 200 || mounts.json()?["data"]["secret/"].is_null() {
        return Ok(()); // not mounted yet
    }
    proc.wait_until("the KV v2 mount at secret/", READY_TIMEOUT, || {
        Ok(http::request(addr(port), "GET", "/v1/secret/config", Some(token), None)?.status == 200)
    })
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn config_path(dir: &Path) -> PathBuf {
    dir.join("openbao").join("config.hcl")
}

fn init_path(dir: &Path) -> PathBuf {
    dir.join("openbao").join("init.json")
}

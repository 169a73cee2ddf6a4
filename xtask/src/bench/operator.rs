//! The operator under test: a release build run as a child process, its resource use from
//! `/proc`, and its Prometheus counters.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command};

use anyhow::{Context, Result, bail};

use xtask::Env;
use xtask::http;

/// The running operator; killed when dropped.
pub struct Operator {
    child: Child,
    /// Where it serves `/metrics`.
    pub metrics: SocketAddr,
    /// heaptrack's interpreter, writing the profile (`--heaptrack`).
    profiler: Option<Child>,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The operator's end closes the pipe: the interpreter finishes the profile.
        if let Some(mut profiler) = self.profiler.take() {
            let _ = profiler.wait();
        }
    }
}

/// heaptrack's libraries, beside its script (`/usr/bin/heaptrack` → `/usr/lib/heaptrack`).
const HEAPTRACK_LIB: &str = "/usr/lib/heaptrack";

/// Starts heaptrack's interpreter on a new pipe at `dir/heaptrack.fifo`, writing `profile`
/// (gzip). Returns it and the environment the operator needs to write into the pipe.
fn heaptrack(dir: &Path, profile: &Path) -> Result<(Child, [(String, String); 2])> {
    let preload = Path::new(HEAPTRACK_LIB).join("libheaptrack_preload.so");
    let interpret = Path::new(HEAPTRACK_LIB).join("libexec/heaptrack_interpret");
    if !preload.exists() || !interpret.exists() {
        bail!(
            "--heaptrack needs heaptrack ({} not found; apt-get install heaptrack)",
            preload.display()
        );
    }
    let fifo = dir.join("heaptrack.fifo");
    let _ = fs::remove_file(&fifo);
    let status = Command::new("mkfifo").arg(&fifo).status().context("running mkfifo")?;
    if !status.success() {
        bail!("mkfifo {} failed", fifo.display());
    }
    let script = format!(
        "'{}' < '{}' | gzip -c > '{}'",
        interpret.display(),
        fifo.display(),
        profile.display()
    );
    let child = Command::new("sh")
        .args(["-c", &script])
        .spawn()
        .context("starting heaptrack_interpret")?;
    let env = [
        ("LD_PRELOAD".to_owned(), preload.display().to_string()),
        ("DUMP_HEAPTRACK_OUTPUT".to_owned(), fifo.display().to_string()),
    ];
    Ok((child, env))
}

/// Builds `target/release/vaultsync`.
pub fn build(root: &Path) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--release", "--bin", "vaultsync"])
        .status()
        .context("running cargo build --release")?;
    if !status.success() {
        bail!("cargo build --release --bin vaultsync failed ({status})");
    }
    Ok(())
}

impl Operator {
    /// Starts `BINARY run` with the operator's own token for every namespace and no leader
    /// election, logging to `log`; under heaptrack when `profile` names its output; watching
    /// only `watch` (comma-separated namespaces) when given.
    pub fn start(
        binary: &Path,
        env: &Env,
        log: &Path,
        profile: Option<&Path>,
        watch: Option<&str>,
    ) -> Result<Operator> {
        let metrics = free_port()?;
        let log = File::create(log)?;
        let (profiler, preload) = match profile {
            Some(profile) => {
                let (child, vars) = heaptrack(&env.dir, profile)?;
                (Some(child), vars.to_vec())
            }
            None => (None, Vec::new()),
        };
        let child = Command::new(binary)
            .arg("run")
            .envs(preload)
            .env("KUBECONFIG", &env.kubeconfig)
            .env("VAULTSYNC_VAULT_ADDRESS", &env.vault_addr)
            .env("VAULTSYNC_VAULT_TOKEN", &env.vault_token)
            .env("VAULTSYNC_DEFAULT_IDENTITY_NAMESPACES", "*")
            .env("VAULTSYNC_METRICS_ADDRESS", metrics.to_string())
            .env("VAULTSYNC_LEADER_ELECTION", "false")
            .env("VAULTSYNC_WATCH_NAMESPACES", watch.unwrap_or_default())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Operator {
            child,
            metrics,
            profiler,
        })
    }

    /// Fails when the operator has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the operator exited ({status}); see its log");
        }
        Ok(())
    }

    /// CPU and memory now.
    pub fn usage(&self) -> Result<Usage> {
        Usage::of(self.child.id())
    }

    /// The counters `vaultsync_vault_requests_total` and `vaultsync_syncs_total`, by label set.
    pub fn counters(&self) -> Result<BTreeMap<String, f64>> {
        let response = http::request(self.metrics, "GET", "/metrics", None, None)?;
        Ok(parse_counters(&response.body))
    }
}

/// Resource use of a process from `/proc`.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// User plus system CPU seconds so far.
    pub cpu_seconds: f64,
    /// Resident set size now, MiB.
    pub rss_mib: f64,
    /// Peak resident set size, MiB.
    pub hwm_mib: f64,
}

/// The environment's processes whose CPU the benchmark reports beside the operator's.
const COMPONENTS: [&str; 3] = ["kube-apiserver", "etcd", "openbao"];

/// CPU seconds so far of each environment component, by name (from `DIR/pids/NAME.pid`).
pub fn component_cpu(dir: &Path) -> BTreeMap<String, f64> {
    COMPONENTS
        .iter()
        .filter_map(|name| {
            let pid_file = fs::read_to_string(dir.join(format!("pids/{name}.pid"))).ok()?;
            let pid = pid_file.lines().next()?.trim().parse().ok()?;
            Some(((*name).to_owned(), Usage::of(pid).ok()?.cpu_seconds))
        })
        .collect()
}

impl Usage {
    fn of(pid: u32) -> Result<Usage> {
        let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib = |field: &str| -> f64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // SAFETY: sysconf only reads a configuration value.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Ok(Usage {
            cpu_seconds: (ticks(11) + ticks(12)) / hz.max(1.0),
            rss_mib: kib("VmRSS:") / 1024.0,
            hwm_mib: kib("VmHWM:") / 1024.0,
        })
    }
}

/// The vaultsync request and sync counters of a Prometheus text exposition.
fn parse_counters(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| l.starts_with("vaultsync_vault_requests_total") || l.starts_with("vaultsync_syncs_total"))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The increase of each counter from `before` to `after`, zero increases left out.
pub fn counter_delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d != 0.0)
        .collect()
}

fn free_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

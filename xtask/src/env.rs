//! The environment: control plane, OpenBao and PostgreSQL, started, attached to and stopped as a
//! unit.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};

use crate::binaries::Binaries;
use crate::certs::Pki;
use crate::kube::{self, APISERVER};
use crate::node::{self, NodeDirs};
use crate::openbao::{self, Keys, OPENBAO};
use crate::postgres;
use crate::process::Proc;
use crate::prometheus::{self, PROMETHEUS};
use crate::startup::{prepare_dir, start_all, stop_all, test_dir};
use crate::state::{State, write_env_sh};

/// Where and how to start an environment.
#[derive(Debug, Clone)]
pub struct EnvOptions {
    /// Directory for data, certificates, logs (`logs/NAME.log`) and pid files (`pids/NAME.pid`).
    pub dir: PathBuf,
    /// `true`: the processes outlive this process (`cargo xtask env up`), stop them with
    /// [`down_dir`]. `false`: they are killed when this process exits, however it exits.
    pub detached: bool,
    /// Also start a node (containerd, kube-scheduler, a kubelet) so that pods run; see
    /// [`crate::node`].
    pub node: bool,
}

/// A running environment: etcd, kube-apiserver, kube-controller-manager, OpenBao and PostgreSQL
/// on loopback.
///
/// Dropping an `Env` stops nothing: call [`Env::down`] (or [`down_dir`] for a detached one).
/// Processes of an attached environment die with this process in any case.
#[derive(Debug)]
pub struct Env {
    /// The environment directory.
    pub dir: PathBuf,
    /// Admin kubeconfig (client certificate in `system:masters`).
    pub kubeconfig: PathBuf,
    /// OpenBao address, `http://127.0.0.1:PORT`.
    pub vault_addr: String,
    /// OpenBao root token.
    pub vault_token: String,
    /// PostgreSQL superuser URL,
    /// `postgresql://postgres:PASSWORD@127.0.0.1:PORT/postgres?sslmode=disable`.
    pub postgres_url: String,
    /// The password of PostgreSQL's superuser `postgres` (also in [`Env::postgres_url`]).
    pub postgres_password: String,
    /// Directories holding `kubectl`, `bao` and `psql`, to prepend to `PATH`.
    pub bin_path: Vec<PathBuf>,
    state: State,
    /// Processes this value spawned (so they can be reaped); others are found by pid file.
    procs: Mutex<HashMap<&'static str, Proc>>,
}

/// A process of the environment that [`Env::freeze`] can freeze.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Etcd,
    OpenBao,
    Postgres,
}

impl Component {
    fn process(self) -> &'static str {
        match self {
            Component::Etcd => kube::ETCD,
            Component::OpenBao => OPENBAO,
            Component::Postgres => postgres::POSTGRES,
        }
    }
}

impl Env {
    /// Builds or installs the binaries into the cache (once; later calls return at once).
    pub fn ensure_binaries() -> Result<Binaries> {
        Binaries::ensure()
    }

    /// Starts an environment in `opts.dir` and returns once the API server is ready, the
    /// `default` ServiceAccount exists in namespace `default`, OpenBao is unsealed with
    /// KV v2 at `secret/`, KV v1 at `kv1/` and PKI at `pki/` (see [`crate::PKI_ROLE`]), and PostgreSQL accepts connections. Any previous
    /// data in the directory is discarded.
    pub fn up(opts: EnvOptions) -> Result<Env> {
        let EnvOptions { dir, detached, node } = opts;
        let binaries = Env::ensure_binaries()?;
        let started = Instant::now();
        prepare_dir(&dir)?;
        let dir = dir.canonicalize()?;
        let env = start_all(&dir, &binaries, detached, node).and_then(|(state, procs)| {
            let env = Env::new(&dir, state, procs)?;
            env.state.save(&dir)?;
            write_env_sh(&dir, &env.shell_vars(), &env.bin_path)?;
            Ok(env)
        });
        match env {
            Ok(env) => {
                eprintln!("environment ready in {:.1?} ({})", started.elapsed(), dir.display());
                Ok(env)
            }
            Err(err) => {
                if let Err(cleanup) = down_dir(&dir) {
                    eprintln!("cleaning up after a failed start: {cleanup:#}");
                }
                Err(err.context(format!("starting the environment in {}", dir.display())))
            }
        }
    }

    /// Attaches to an environment started by `cargo xtask env up` in `dir`, and sets up OpenBao's
    /// PKI engine there if it lacks it.
    pub fn load(dir: &Path) -> Result<Env> {
        let dir = dir
            .canonicalize()
            .with_context(|| format!("no environment in {}", dir.display()))?;
        if Proc::from_pid_file(&dir, APISERVER)?.is_none() {
            bail!(
                "the environment in {} is not running; start it with `cargo xtask env up`",
                dir.display()
            );
        }
        let state = State::load(&dir).with_context(|| {
            format!(
                "an environment started by an older xtask? restart it: cargo xtask env down --dir {0} \
                 && cargo xtask env up --dir {0}",
                dir.display()
            )
        })?;
        let env = Env::new(&dir, state, HashMap::new())?;
        // An environment started by an older xtask lacks what was added since; this is idempotent.
        openbao::setup_pki(env.state.openbao_port, &env.vault_token).context("setting up PKI in OpenBao")?;
        Ok(env)
    }

    /// The environment shared by all tests of one test binary, started on first use.
    ///
    /// With `VAULTSYNC_ENV_DIR` set, attaches to the environment there (see `cargo xtask env up`);
    /// otherwise starts one in a temporary directory whose processes die with the test process.
    ///
    /// # Panics
    /// When the environment cannot be started or attached to (this is a test helper).
    pub fn shared() -> &'static Env {
        static SHARED: OnceLock<Result<Env, String>> = OnceLock::new();
        Env::shared_in(&SHARED, false)
    }

    /// Like [`Env::shared`], with a node, for test binaries whose pods must run. An attached
    /// environment's containers and mounts are removed when the test process exits normally (and
    /// by the next test process otherwise).
    ///
    /// # Panics
    /// When the environment cannot be started or attached to, or the one attached to has no node.
    pub fn shared_with_node() -> &'static Env {
        static SHARED: OnceLock<Result<Env, String>> = OnceLock::new();
        Env::shared_in(&SHARED, true)
    }

    #[allow(clippy::panic)]
    fn shared_in(cell: &'static OnceLock<Result<Env, String>>, node: bool) -> &'static Env {
        let env = cell.get_or_init(|| {
            let result = match std::env::var_os("VAULTSYNC_ENV_DIR").filter(|d| !d.is_empty()) {
                Some(dir) => Env::load(Path::new(&dir)).and_then(|env| {
                    if node && !env.state.node {
                        bail!(
                            "the environment in {} has no node; start one with `cargo xtask env up`",
                            env.dir.display()
                        );
                    }
                    Ok(env)
                }),
                None => Env::up(EnvOptions {
                    dir: test_dir(),
                    detached: false,
                    node,
                })
                .inspect(|env| {
                    if node {
                        teardown_node_at_exit(&env.dir);
                    }
                }),
            };
            result.map_err(|err| format!("{err:#}"))
        });
        match env {
            Ok(env) => env,
            Err(err) => panic!("the vaultsync test environment is unavailable: {err}"),
        }
    }

    /// Whether this environment has a node.
    pub fn has_node(&self) -> bool {
        self.state.node
    }

    /// Imports an image archive into the node's containerd.
    pub fn import_image(&self, archive: &Path) -> Result<()> {
        node::import(&self.dir, archive)
    }

    /// The log of `container` in the pod `namespace/pod` (all its restarts, in order), as the
    /// kubelet writes it (CRI format: `TIME STREAM FLAG text` per line); empty until it exists.
    /// `kubectl logs` does not work here: the node has no address the API server could reach.
    pub fn container_log(&self, namespace: &str, pod: &str, container: &str) -> String {
        let prefix = format!("{namespace}_{pod}_");
        let Ok(entries) = fs::read_dir(NodeDirs::at(&self.dir).pod_logs()) else {
            return String::new();
        };
        let mut text = String::new();
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with(&prefix) {
                continue;
            }
            let Ok(files) = fs::read_dir(entry.path().join(container)) else {
                continue;
            };
            let mut files: Vec<_> = files.flatten().map(|f| f.path()).collect();
            files.sort_by_key(|path| restart_number(path));
            for file in files {
                text.push_str(&fs::read_to_string(file).unwrap_or_default());
            }
        }
        text
    }

    /// Stops the OpenBao server and waits for it to exit. Its data stays on disk.
    pub fn stop_openbao(&self) -> Result<()> {
        self.stop(OPENBAO)
    }

    /// Starts OpenBao again on the same port with the same data, unseals it and waits until it is
    /// ready.
    pub fn start_openbao(&self) -> Result<()> {
        let mut procs = self.procs()?;
        if procs.contains_key(OPENBAO) || Proc::from_pid_file(&self.dir, OPENBAO)?.is_some() {
            bail!("OpenBao is already running");
        }
        let keys = Keys::load(&self.dir)?;
        let State {
            openbao_port, detached, ..
        } = self.state;
        let mut proc = openbao::start(&self.dir, &self.state.binaries, openbao_port, detached)?;
        if let Err(err) = openbao::unseal(&mut proc, openbao_port, &keys) {
            let _ = proc.stop(&self.dir);
            return Err(err);
        }
        procs.insert(OPENBAO, proc);
        Ok(())
    }

    /// Seals OpenBao (`sys/seal`): it answers 503 "Vault is sealed" until [`Env::unseal_openbao`].
    pub fn seal_openbao(&self) -> Result<()> {
        let keys = Keys::load(&self.dir)?;
        openbao::seal(self.state.openbao_port, &keys)
    }

    /// Unseals OpenBao and waits until it is active again.
    pub fn unseal_openbao(&self) -> Result<()> {
        let keys = Keys::load(&self.dir)?;
        openbao::unseal_running(self.state.openbao_port, &keys)
    }

    /// Restarts kube-apiserver (same flags, same etcd, same port) and waits until it is ready.
    pub fn restart_apiserver(&self) -> Result<()> {
        if self.state.etcd_port == 0 {
            bail!("this environment predates restarts of kube-apiserver; start a new one");
        }
        let apiserver = self
            .state
            .api_server_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .context("the API server's port")?;
        let ports = kube::KubePorts {
            etcd_client: self.state.etcd_port,
            etcd_peer: 0,
            apiserver,
            controller_manager: 0,
        };
        self.stop(APISERVER)?;
        let proc = kube::start_apiserver(
            &self.dir,
            &self.state.binaries,
            ports,
            &self.kubeconfig,
            self.state.detached,
        )?;
        self.procs()?.insert(APISERVER, proc);
        Ok(())
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) one of the environment's processes, as a stalled
    /// machine would: it keeps its connections and answers nothing.
    pub fn freeze(&self, component: Component, frozen: bool) -> Result<()> {
        let name = component.process();
        let proc = Proc::from_pid_file(&self.dir, name)?.with_context(|| format!("{name} is not running"))?;
        proc.signal(if frozen { libc::SIGSTOP } else { libc::SIGCONT });
        Ok(())
    }

    /// Stops PostgreSQL and waits for it to exit. Its data stays on disk.
    pub fn stop_postgres(&self) -> Result<()> {
        self.stop(postgres::POSTGRES)
    }

    /// Starts PostgreSQL again on the same port with the same data and waits until it is ready.
    pub fn start_postgres(&self) -> Result<()> {
        let proc = postgres::start(
            &self.dir,
            &self.state.postgres_dir,
            &self.state.binaries,
            self.state.postgres_port,
            self.state.detached,
        )?;
        self.procs()?.insert(postgres::POSTGRES, proc);
        Ok(())
    }

    /// Starts Prometheus (Debian's) scraping `/metrics` of `targets` (`HOST:PORT`) as job `job`
    /// every [`prometheus::SCRAPE_INTERVAL`]; returns its address for [`prometheus::query`]. It
    /// stops with the environment.
    pub fn start_prometheus(&self, job: &str, targets: &[String]) -> Result<std::net::SocketAddr> {
        let mut procs = self.procs()?;
        if procs.contains_key(PROMETHEUS) {
            bail!("Prometheus already runs in this environment");
        }
        let (proc, addr) = prometheus::start(&self.dir, job, targets, self.state.detached)?;
        procs.insert(PROMETHEUS, proc);
        Ok(addr)
    }

    /// A `kubectl` command with `KUBECONFIG` set to the admin kubeconfig.
    pub fn kubectl(&self) -> Command {
        kube::kubectl(&self.state.binaries, &self.kubeconfig)
    }

    /// A `psql` command connected to PostgreSQL as the superuser over TCP, through `PG*`
    /// variables (`PGUSER` and `PGPASSWORD` log in as another role), with `ON_ERROR_STOP` set
    /// and no `~/.psqlrc`: `env.psql().args(["-c", "select 1"])`.
    pub fn psql(&self) -> Command {
        postgres::psql(&self.state.binaries, self.state.postgres_port, &self.postgres_password)
    }

    /// The connection URL for OpenBao's `database/config/...` `connection_url`, with
    /// `{{username}}` and `{{password}}` for the `username`/`password` it is given (`postgres`
    /// and [`Env::postgres_password`]).
    pub fn postgres_url_template(&self) -> String {
        postgres::url_template(self.state.postgres_port)
    }

    /// A `bao` command with `BAO_ADDR`/`BAO_TOKEN` and `VAULT_ADDR`/`VAULT_TOKEN` set.
    pub fn bao(&self) -> Command {
        let mut cmd = Command::new(&self.state.binaries.bao);
        for (name, value) in self.vault_vars() {
            cmd.env(name, value);
        }
        cmd
    }

    /// The API server URL, `https://127.0.0.1:PORT`.
    pub fn api_server_url(&self) -> String {
        self.state.api_server_url.clone()
    }

    /// The PEM of the CA that signed the API server's serving certificate.
    pub fn ca_pem(&self) -> String {
        // Written before the API server started and never removed while it runs.
        fs::read_to_string(Pki::at(&self.dir).ca_cert()).unwrap_or_default()
    }

    /// The PEM public key the API server's ServiceAccount tokens are verified with (what a Vault
    /// JWT auth method is given as `jwt_validation_pubkeys`).
    pub fn service_account_key_pem(&self) -> String {
        // Written before the API server started and never removed while it runs.
        fs::read_to_string(Pki::at(&self.dir).sa_pub()).unwrap_or_default()
    }

    /// Stops every process of the environment and waits for them to exit; removes the node's
    /// containers and mounts.
    pub fn down(self) -> Result<()> {
        stop_all(&self.dir, |name| self.stop(name))
    }

    fn new(dir: &Path, state: State, procs: HashMap<&'static str, Proc>) -> Result<Env> {
        let postgres_password = postgres::load_password(&state.postgres_dir)?;
        Ok(Env {
            dir: dir.to_path_buf(),
            kubeconfig: kube::kubeconfig_path(dir),
            vault_addr: format!("http://127.0.0.1:{}", state.openbao_port),
            vault_token: Keys::load(dir)?.root_token,
            postgres_url: postgres::url(state.postgres_port, &postgres_password),
            postgres_password,
            bin_path: state.binaries.bin_path(),
            state,
            procs: Mutex::new(procs),
        })
    }

    fn procs(&self) -> Result<MutexGuard<'_, HashMap<&'static str, Proc>>> {
        self.procs.lock().map_err(|_| anyhow!("environment lock poisoned"))
    }

    /// Stops `name`, whether this value spawned it or it is only known by its pid file.
    fn stop(&self, name: &'static str) -> Result<()> {
        let mut procs = self.procs()?;
        match procs.remove(name) {
            Some(proc) => proc.stop(&self.dir),
            None => Proc::stop_recorded(&self.dir, name),
        }
    }

    fn vault_vars(&self) -> [(&'static str, &str); 4] {
        [
            ("BAO_ADDR", &self.vault_addr),
            ("BAO_TOKEN", &self.vault_token),
            ("VAULT_ADDR", &self.vault_addr),
            ("VAULT_TOKEN", &self.vault_token),
        ]
    }

    /// Variables for `env.sh`.
    fn shell_vars(&self) -> Vec<(&'static str, String)> {
        let mut vars = vec![("KUBECONFIG", self.kubeconfig.display().to_string())];
        vars.extend(self.vault_vars().map(|(name, value)| (name, value.to_owned())));
        vars.push(("POSTGRES_URL", self.postgres_url.clone()));
        vars
    }
}

/// Stops an environment started detached in `dir` (processes found through `DIR/pids`), and
/// removes its node's containers and mounts.
pub fn down_dir(dir: &Path) -> Result<()> {
    stop_all(dir, |name| Proc::stop_recorded(dir, name))
}

/// `N` of a kubelet log file `N.log` (the container's restart count).
fn restart_number(path: &Path) -> u32 {
    path.file_stem()
        .and_then(|stem| stem.to_str())
        .and_then(|stem| stem.parse().ok())
        .unwrap_or(0)
}

/// Removes the node's containers and mounts in `dir` when this process exits normally (its
/// containerd and kubelet die with it, but not their containers).
fn teardown_node_at_exit(dir: &Path) {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    extern "C" fn teardown() {
        if let Some(dir) = DIR.get() {
            let _ = node::teardown(dir);
        }
    }
    if DIR.set(dir.to_path_buf()).is_ok() {
        // SAFETY: registers a plain function to run at exit.
        unsafe { libc::atexit(teardown) };
    }
}

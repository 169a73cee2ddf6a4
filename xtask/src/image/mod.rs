//! The container images of the project, built offline as OCI archives ([`oci`]): the operator's
//! (`cargo xtask image`), and the small ones the local node needs — the pod sandbox's `pause`
//! and the test workloads' busybox shell with `psql`.

pub mod oci;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::binaries::{ensure_debian_packages, workspace_root};
use crate::process::run;
use oci::{Entry, Image, Run};

/// The operator image's reference, as `config/manager/deployment.yaml` names it (`vaultsync:dev`).
pub const OPERATOR_IMAGE: &str = "docker.io/library/vaultsync:dev";
/// The pod sandbox image of the local node.
pub const PAUSE_IMAGE: &str = "docker.io/library/vaultsync-pause:1";
/// The test workloads' image: busybox (`/bin/sh`, `cat`, `sleep`, …) and PostgreSQL's `psql`.
pub const TOOLS_IMAGE: &str = "docker.io/library/vaultsync-tools:1";

/// The Rust target of the operator image's binary: static, so the image needs no libraries.
pub const TARGET: &str = "x86_64-unknown-linux-musl";
/// The user the operator image runs as (distroless' `nonroot`, as in the `Dockerfile`).
pub const USER: &str = "65532:65532";

/// The stripped static binary the operator image holds, relative to the workspace root.
pub const STRIPPED_BINARY: &str = "target/images/vaultsync";

/// A built image archive.
#[derive(Debug, Clone)]
pub struct Archive {
    /// The archive file.
    pub path: PathBuf,
    /// The image reference inside it.
    pub reference: String,
    /// What was written.
    pub written: oci::Written,
}

/// Builds the release binary for [`TARGET`] and writes the operator image to
/// `target/images/vaultsync.oci.tar`.
pub fn operator() -> Result<Archive> {
    let root = workspace_root();
    // musl-gcc (Debian's musl-tools) compiles aws-lc's C for the target.
    ensure_debian_packages()?;
    ensure_target()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--locked",
            "--bin",
            "vaultsync",
            "--target",
            TARGET,
        ])
        // aws-lc-sys compiles C for the target with musl's wrapper around the system compiler.
        .env("CC_x86_64_unknown_linux_musl", "musl-gcc");
    run(build, "cargo build --release --target x86_64-unknown-linux-musl")?;
    // Symbols are no use in the image: a stripped copy (the release build keeps them for
    // profiling the benchmark's operator).
    let binary = root.join(STRIPPED_BINARY);
    fs::create_dir_all(root.join("target/images"))?;
    let mut strip = Command::new("strip");
    strip
        .arg("-o")
        .arg(&binary)
        .arg(root.join("target").join(TARGET).join("release/vaultsync"));
    run(strip, "strip vaultsync")?;
    let mut entries = base_entries();
    entries.push(Entry::file("vaultsync", 0o755, read(&binary)?));
    entries.push(Entry::file(
        "etc/passwd",
        0o644,
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    ));
    entries.push(Entry::file("etc/group", 0o644, "root:x:0:\nnonroot:x:65532:\n"));
    // Root CAs for a Vault with a public certificate (a private CA comes with --vault-ca-file).
    let roots = Path::new("/etc/ssl/certs/ca-certificates.crt");
    entries.push(Entry::file("etc/ssl/certs/ca-certificates.crt", 0o644, read(roots)?));
    let image = Image {
        reference: OPERATOR_IMAGE.into(),
        entries,
        run: Run {
            entrypoint: vec!["/vaultsync".into()],
            cmd: vec!["run".into()],
            user: USER.into(),
            env: Vec::new(),
        },
    };
    write(&image, &root.join("target/images/vaultsync.oci.tar"))
}

/// The pod sandbox image: a static `pause` compiled from `pause.c`, in `DIR/node/images`.
pub(crate) fn pause(dir: &Path) -> Result<PathBuf> {
    let out = dir.join("node/images");
    fs::create_dir_all(&out)?;
    let source = out.join("pause.c");
    fs::write(&source, include_str!("pause.c"))?;
    let binary = out.join("pause");
    let mut gcc = Command::new("gcc");
    gcc.args(["-static", "-Os", "-o"]).arg(&binary).arg(&source);
    run(gcc, "gcc -static pause.c")?;
    let mut entries = base_entries();
    entries.push(Entry::file("pause", 0o755, read(&binary)?));
    let image = Image {
        reference: PAUSE_IMAGE.into(),
        entries,
        run: Run {
            entrypoint: vec!["/pause".into()],
            ..Run::default()
        },
    };
    write(&image, &out.join("pause.oci.tar")).map(|archive| archive.path)
}

/// The test workloads' image, in `DIR/node/images`: Debian's `busybox-static` with its applets
/// in `/bin`, and `psql` with the shared libraries it loads.
pub fn tools(dir: &Path) -> Result<Archive> {
    let out = dir.join("node/images");
    fs::create_dir_all(&out)?;
    let mut entries = base_entries();
    entries.push(Entry::file("bin/busybox", 0o755, read(Path::new("/bin/busybox"))?));
    for applet in [
        "sh", "cat", "echo", "env", "ls", "sleep", "date", "wc", "grep", "sort", "tr",
    ] {
        entries.push(Entry::Symlink {
            path: format!("bin/{applet}"),
            target: "busybox".into(),
        });
    }
    let psql = Path::new("/usr/lib/postgresql/15/bin/psql");
    entries.extend(with_libraries(psql)?);
    entries.push(Entry::Symlink {
        path: "bin/psql".into(),
        target: psql.display().to_string(),
    });
    let image = Image {
        reference: TOOLS_IMAGE.into(),
        entries,
        run: Run {
            cmd: vec!["/bin/sh".into()],
            env: vec!["PATH=/bin".into()],
            ..Run::default()
        },
    };
    write(&image, &out.join("tools.oci.tar"))
}

/// `program` and every shared library `ldd` says it loads (with the dynamic loader), each at its
/// own path.
fn with_libraries(program: &Path) -> Result<Vec<Entry>> {
    let mut ldd = Command::new("ldd");
    ldd.arg(program);
    let listing = run(ldd, &format!("ldd {}", program.display()))?;
    let mut files = vec![program.to_path_buf()];
    for line in listing.lines() {
        // `libpq.so.5 => /lib/x86_64-linux-gnu/libpq.so.5 (0x…)` or `/lib64/ld-linux-x86-64.so.2 (0x…)`
        let path = line.split("=>").last().unwrap_or_default().trim();
        let path = path.split(" (").next().unwrap_or_default();
        if path.starts_with('/') {
            files.push(PathBuf::from(path));
        }
    }
    files
        .iter()
        .map(|file| {
            let inside = file.strip_prefix("/").unwrap_or(file).display().to_string();
            Ok(Entry::file(&inside, 0o755, read(file)?))
        })
        .collect()
}

/// The mount points runc needs in every image (a read-only root file system cannot get them).
fn base_entries() -> Vec<Entry> {
    let mut entries: Vec<Entry> = ["proc", "dev", "sys", "tmp"].map(Entry::dir).to_vec();
    entries.extend(["etc/resolv.conf", "etc/hosts", "etc/hostname"].map(|path| Entry::file(path, 0o644, "")));
    entries
}

fn write(image: &Image, path: &Path) -> Result<Archive> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let written = image.write(path)?;
    Ok(Archive {
        path: path.to_path_buf(),
        reference: image.reference.clone(),
        written,
    })
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Adds the Rust standard library for [`TARGET`] with rustup unless it is there.
fn ensure_target() -> Result<()> {
    let mut list = Command::new("rustup");
    list.args(["target", "list", "--installed"]);
    if run(list, "rustup target list")?
        .lines()
        .any(|line| line.trim() == TARGET)
    {
        return Ok(());
    }
    eprintln!("adding the Rust target {TARGET} with rustup (first run only)...");
    let mut add = Command::new("rustup");
    add.args(["target", "add", TARGET]);
    run(add, &format!("rustup target add {TARGET}")).map(drop)
}

//! A PostgreSQL server from Debian's `postgresql-15`, for OpenBao's database secrets engine.
//!
//! PostgreSQL refuses to run as root, so as root `initdb` and `postgres` run as the `postgres`
//! user (the privileges are dropped in the child itself, not through `su`, so the server is the
//! supervised process and dies with an attached environment); as anyone else, as themselves. Its directory must be reachable by
//! that user: `DIR/postgres` when it can traverse `DIR`, else a directory under `/tmp` named
//! after `DIR` (an environment under `/root` or another private home).
//!
//! Local (unix socket) connections are trusted; TCP connections on 127.0.0.1 need a password,
//! so the credentials OpenBao issues are really checked.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::binaries::Binaries;
use crate::process::{Proc, run};

/// Process name of the PostgreSQL server (log and pid file).
pub(crate) const POSTGRES: &str = "postgres";
/// The superuser, also the OS user the server runs as.
pub(crate) const SUPERUSER: &str = "postgres";

const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// A unix socket path must fit `sockaddr_un.sun_path` (108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The server's directory when the `postgres` user can reach `dir`.
fn local_dir(dir: &Path) -> PathBuf {
    dir.join("postgres")
}

/// Where the server's directory goes when the `postgres` user cannot reach `dir`: a name
/// derived from `dir`, so the next start or the test-directory sweep can remove it.
fn fallback_dir(dir: &Path) -> PathBuf {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    // FNV-1a: stable across builds, unlike `DefaultHasher`.
    let hash = dir
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    Path::new("/tmp").join(format!("vaultsync-postgres-{hash:016x}"))
}

/// Cleans up after a stopped server of the environment in `dir`: removes its System V shared
/// memory segment if it was killed (an attached environment dies with SIGKILL) and the server
/// directory it may have left outside `dir`. The one inside goes with `dir`.
pub(crate) fn remove_leftovers(dir: &Path) -> Result<()> {
    release_shared_memory(&local_dir(dir));
    release_shared_memory(&fallback_dir(dir));
    let path = fallback_dir(dir);
    match fs::remove_dir_all(&path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The password of the superuser, stored in the server's directory (`pg_dir` from the state).
pub(crate) fn load_password(pg_dir: &Path) -> Result<String> {
    let path = password_path(pg_dir);
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.trim().to_owned())
}

/// The superuser's connection URL.
pub(crate) fn url(port: u16, password: &str) -> String {
    format!("postgresql://{SUPERUSER}:{password}@127.0.0.1:{port}/postgres?sslmode=disable")
}

/// The URL for OpenBao's `database/config/...` `connection_url`, which fills in the username and
/// password it is given.
pub(crate) fn url_template(port: u16) -> String {
    format!("postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{port}/postgres?sslmode=disable")
}

/// Creates the server directory and a fresh cluster whose superuser has a random password;
/// returns the directory. Runs `initdb` as the `postgres` user.
pub(crate) fn initialize(dir: &Path, bins: &Binaries) -> Result<PathBuf> {
    let user = User::lookup()?;
    let pg_dir = if user.can_traverse(dir)? {
        local_dir(dir)
    } else {
        fallback_dir(dir)
    };
    let _ = fs::remove_dir_all(&pg_dir);
    fs::create_dir_all(&pg_dir).with_context(|| format!("creating {}", pg_dir.display()))?;
    fs::set_permissions(&pg_dir, fs::Permissions::from_mode(0o700))?;
    user.chown(&pg_dir)?;

    // initdb reads the password from a file; the user needs to read it, we keep it for `Env::load`.
    let password_file = password_path(&pg_dir);
    crate::certs::write_private(&password_file, &format!("{}\n", random_password()?))?;
    user.chown(&password_file)?;

    let mut cmd = user.command(&bins.initdb);
    cmd.arg(format!("--pgdata={}", data_path(&pg_dir).display()))
        .arg(format!("--username={SUPERUSER}"))
        .arg(format!("--pwfile={}", password_file.display()))
        .args([
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",
            // Throwaway data: no fsync here, nor in the server.
            "--no-sync",
            "--no-instructions",
        ]);
    // initdb costs about half a CPU-second: run it at a low priority, off the critical path of
    // the control plane starting meanwhile on the same (2-core) machine.
    // SAFETY: nice is an async-signal-safe syscall touching no parent memory.
    unsafe {
        cmd.pre_exec(|| {
            libc::nice(10);
            Ok(())
        });
    }
    run(cmd, "initdb (as the postgres user)")?;
    Ok(pg_dir)
}

/// Starts the server of the cluster in `pg_dir` (made by [`initialize`]) on `port` and waits
/// until it accepts connections.
pub(crate) fn start(dir: &Path, pg_dir: &Path, bins: &Binaries, port: u16, detached: bool) -> Result<Proc> {
    let data = data_path(pg_dir);
    // The socket is for local tools only; drop it rather than fail when the path is too long.
    let socket = data.join(format!(".s.PGSQL.{port}"));
    let socket_dir = if socket.as_os_str().len() <= MAX_SOCKET_PATH {
        data.display().to_string()
    } else {
        String::new()
    };
    let mut cmd = User::lookup()?.command(&bins.postgres);
    cmd.arg("-D")
        .arg(&data)
        .arg("-p")
        .arg(port.to_string())
        .arg("-c")
        .arg(format!("unix_socket_directories={socket_dir}"))
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]);
    // SIGTERM is a "smart" shutdown that waits for clients (OpenBao keeps a pool) to disconnect;
    // SIGINT disconnects them.
    let mut proc = Proc::spawn_with_stop_signal(dir, POSTGRES, cmd, detached, libc::SIGINT)?;
    proc.wait_until("PostgreSQL to accept connections", READY_TIMEOUT, || {
        let status = Command::new(&bins.pg_isready)
            .args(["--quiet", "--host=127.0.0.1", "--dbname=postgres"])
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .status()?;
        Ok(status.success())
    })?;
    Ok(proc)
}

/// A `psql` client connected as the superuser over TCP (`PG*` variables, so arguments such as
/// `--username` and the variables `PGUSER`/`PGPASSWORD` can override them), stopping at the
/// first error and ignoring `~/.psqlrc`.
pub(crate) fn psql(bins: &Binaries, port: u16, password: &str) -> Command {
    let mut cmd = Command::new(&bins.psql);
    cmd.env("PGHOST", "127.0.0.1")
        .env("PGPORT", port.to_string())
        .env("PGUSER", SUPERUSER)
        .env("PGPASSWORD", password)
        .env("PGDATABASE", "postgres")
        .env("PGSSLMODE", "disable")
        .env("PGCONNECT_TIMEOUT", "10")
        .args(["--no-psqlrc", "--set=ON_ERROR_STOP=1"]);
    cmd
}

/// Removes the small System V segment a killed server leaves behind (one per run otherwise,
/// until the system's segment limit is reached), as recorded in its `postmaster.pid`.
fn release_shared_memory(pg_dir: &Path) {
    let Ok(pid_file) = fs::read_to_string(data_path(pg_dir).join("postmaster.pid")) else {
        return;
    };
    // Line 7 holds the segment's key and id.
    let Some((key, id)) = pid_file.lines().nth(6).and_then(|line| {
        let mut fields = line.split_whitespace();
        let key: u32 = fields.next()?.parse().ok()?;
        let id: libc::c_int = fields.next()?.parse().ok()?;
        Some((key, id))
    }) else {
        return;
    };
    // SAFETY: shmid_ds is plain data; shmctl writes into it or fails. IPC_RMID only for the
    // segment that still has the recorded key and no process attached.
    unsafe {
        let mut stat: libc::shmid_ds = std::mem::zeroed();
        if libc::shmctl(id, libc::IPC_STAT, &mut stat) == 0 && stat.shm_perm.__key as u32 == key && stat.shm_nattch == 0
        {
            libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
        }
    }
}

fn data_path(pg_dir: &Path) -> PathBuf {
    pg_dir.join("data")
}

fn password_path(pg_dir: &Path) -> PathBuf {
    pg_dir.join("password")
}

/// 32 hex digits from the kernel's CSPRNG.
fn random_password() -> Result<String> {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The OS user PostgreSQL runs as: `postgres` (created by Debian's `postgresql-common`) when
/// we are root, else ourselves.
#[derive(Debug, Clone, Copy)]
struct User {
    uid: u32,
    gid: u32,
}

impl User {
    fn lookup() -> Result<User> {
        // SAFETY: plain syscalls without arguments.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        if euid != 0 {
            return Ok(User { uid: euid, gid: egid });
        }
        let name = CString::new(SUPERUSER)?;
        // SAFETY: getpwnam returns null or a pointer to static storage, read at once; only
        // start-up threads call it, and the fields read are plain integers.
        let entry = unsafe { libc::getpwnam(name.as_ptr()) };
        if entry.is_null() {
            bail!("there is no `{SUPERUSER}` user; install Debian's postgresql-15 (`cargo xtask install`)");
        }
        // SAFETY: checked non-null above.
        let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
        Ok(User { uid, gid })
    }

    /// A command that runs as this user (supplementary groups dropped when we are root), from
    /// `/`: the caller's working directory may be out of its reach.
    fn command(self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.uid(self.uid).gid(self.gid).current_dir("/");
        cmd
    }

    /// Whether this user can reach `dir` (search permission on it and every parent).
    fn can_traverse(self, dir: &Path) -> Result<bool> {
        let status = self
            .command(Path::new("test"))
            .arg("-x")
            .arg(dir)
            .stdin(Stdio::null())
            .status()
            .context("running `test -x` as the postgres user")?;
        Ok(status.success())
    }

    fn chown(self, path: &Path) -> Result<()> {
        chown(path, Some(self.uid), Some(self.gid)).with_context(|| format!("chown postgres {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_directory_is_stable_and_distinct_per_environment() {
        let a = fallback_dir(Path::new("/root/src/vaultsync/target/vaultsync-env"));
        assert_eq!(a, fallback_dir(Path::new("/root/src/vaultsync/target/vaultsync-env")));
        assert_ne!(a, fallback_dir(Path::new("/root/src/vaultsync/target/vaultsync-demo")));
        assert!(a.starts_with("/tmp"));
    }

    #[test]
    fn the_openbao_template_has_placeholders_where_the_url_has_credentials() {
        assert_eq!(
            url_template(5432),
            url(5432, "PW").replace("postgres:PW", "{{username}}:{{password}}")
        );
    }

    #[test]
    fn passwords_are_random_hex() {
        let (a, b) = (random_password().unwrap(), random_password().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}

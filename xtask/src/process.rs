//! Child processes of the environment: pid files, logs, stopping and readiness polling.
//!
//! Every process logs to `DIR/logs/NAME.log` and is recorded in `DIR/pids/NAME.pid`, so a
//! detached environment can be found and stopped again by another process.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};

use crate::spawn;

/// How long a process gets to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of a log file quoted in start-up errors.
const LOG_TAIL_LINES: usize = 40;

/// A running child process of the environment.
#[derive(Debug)]
pub(crate) struct Proc {
    name: String,
    pid: u32,
    /// Present when this process spawned the child, so it can be reaped.
    child: Option<Child>,
    log: PathBuf,
    /// The signal asking the process to exit (before SIGKILL).
    stop_signal: libc::c_int,
}

impl Proc {
    /// Spawns `cmd` as the process `name`, logging to `DIR/logs/NAME.log` and recording its pid in
    /// `DIR/pids/NAME.pid`.
    pub fn spawn(dir: &Path, name: &str, cmd: Command, detached: bool) -> Result<Proc> {
        Proc::spawn_with_stop_signal(dir, name, cmd, detached, libc::SIGTERM)
    }

    /// Like [`Proc::spawn`], for a process asked to exit with `stop_signal` rather than SIGTERM
    /// (recorded in the pid file, so other processes stop it the same way).
    pub fn spawn_with_stop_signal(
        dir: &Path,
        name: &str,
        mut cmd: Command,
        detached: bool,
        stop_signal: libc::c_int,
    ) -> Result<Proc> {
        let log = log_path(dir, name);
        let mut log_file = open_log(&log)?;
        let program = PathBuf::from(cmd.get_program());
        writeln!(log_file, "--- starting {name} at unix time {} ---", unix_now())?;
        cmd.stdin(Stdio::null()).stdout(log_file.try_clone()?).stderr(log_file);

        let child = if detached {
            spawn::detached(cmd)
        } else {
            spawn::attached(cmd)
        }
        .with_context(|| format!("cannot start {name} ({})", program.display()))?;

        let pid = child.id();
        write_pid_file(dir, name, pid, &program, stop_signal)?;
        Ok(Proc {
            name: name.to_owned(),
            pid,
            child: Some(child),
            log,
            stop_signal,
        })
    }

    /// The process recorded in `DIR/pids/NAME.pid`, if that pid still runs the recorded program.
    pub fn from_pid_file(dir: &Path, name: &str) -> Result<Option<Proc>> {
        let path = pid_path(dir, name);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        };
        let mut lines = text.lines();
        let pid: u32 = lines
            .next()
            .and_then(|line| line.trim().parse().ok())
            .with_context(|| format!("malformed pid file {}", path.display()))?;
        let program = lines.next().unwrap_or_default();
        let stop_signal = lines
            .next()
            .and_then(|line| line.trim().parse().ok())
            .unwrap_or(libc::SIGTERM);
        let mut proc = Proc {
            name: name.to_owned(),
            pid,
            child: None,
            log: log_path(dir, name),
            stop_signal,
        };
        // Guard against pid reuse: only claim the pid if it still runs the same program.
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
        if proc.has_exited() || argv0 != program.as_bytes() {
            return Ok(None);
        }
        Ok(Some(proc))
    }

    /// Stops the process recorded in `DIR/pids/NAME.pid`, if it still runs, and removes the
    /// pid file either way.
    pub fn stop_recorded(dir: &Path, name: &str) -> Result<()> {
        match Proc::from_pid_file(dir, name)? {
            Some(proc) => proc.stop(dir),
            None => remove_if_exists(&pid_path(dir, name)),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process is gone (or a zombie).
    pub fn has_exited(&mut self) -> bool {
        if let Some(child) = &mut self.child {
            return !matches!(child.try_wait(), Ok(None));
        }
        match fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            // The state follows the parenthesised command name.
            Ok(stat) => stat
                .rsplit_once(')')
                .is_none_or(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => true,
        }
    }

    /// Stops the process: its stop signal (SIGTERM unless spawned with another), then SIGKILL
    /// after a timeout; waits until it is gone and removes its pid file.
    pub fn stop(mut self, dir: &Path) -> Result<()> {
        self.signal(self.stop_signal);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while !self.has_exited() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        if !self.has_exited() {
            eprintln!(
                "{} (pid {}) ignored signal {}, killing it",
                self.name, self.pid, self.stop_signal
            );
            self.signal(libc::SIGKILL);
            let deadline = Instant::now() + STOP_TIMEOUT;
            while !self.has_exited() {
                if Instant::now() > deadline {
                    bail!("{} (pid {}) survived SIGKILL", self.name, self.pid);
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        if let Some(child) = &mut self.child {
            child.wait()?;
        }
        remove_if_exists(&pid_path(dir, &self.name))
    }

    pub(crate) fn signal(&self, signal: libc::c_int) {
        // SAFETY: plain syscall; a stale pid only yields ESRCH.
        unsafe {
            libc::kill(self.pid as libc::pid_t, signal);
        }
    }

    /// Polls `ready` every `interval` until it returns true. Fails with the tail of the log when
    /// the process exits first or `timeout` passes.
    pub fn wait_until(&mut self, what: &str, timeout: Duration, mut ready: impl FnMut() -> Result<bool>) -> Result<()> {
        let start = Instant::now();
        let mut last_error = None;
        loop {
            match ready() {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(err) => last_error = Some(err),
            }
            if self.has_exited() {
                bail!("{} exited while waiting for {what}{}", self.name, self.log_tail());
            }
            if start.elapsed() > timeout {
                let last = last_error.map(|e| format!(" (last error: {e:#})")).unwrap_or_default();
                bail!(
                    "timed out after {timeout:?} waiting for {what}{last}{}",
                    self.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines of the process's log, formatted for an error message.
    pub fn log_tail(&self) -> String {
        format!(
            "\n--- last lines of {} ---\n{}",
            self.log.display(),
            tail_of_file(&self.log, LOG_TAIL_LINES)
        )
    }
}

/// A free TCP port on 127.0.0.1. The listener is returned so several ports can be reserved at
/// once; drop it before the port is used.
pub(crate) fn reserve_port() -> Result<(u16, TcpListener)> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a free loopback port")?;
    Ok((listener.local_addr()?.port(), listener))
}

/// Runs `cmd` to completion; on failure the error carries its stderr tail.
pub(crate) fn run(mut cmd: Command, what: &str) -> Result<String> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {:?} ({what})", cmd.get_program()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let tail = last_lines(&format!("{stdout}{stderr}"), LOG_TAIL_LINES);
        return Err(anyhow!("{what} failed ({})\n{tail}", output.status));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `DIR/pids/NAME.pid`.
fn pid_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("pids").join(format!("{name}.pid"))
}

fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("logs").join(format!("{name}.log"))
}

fn open_log(path: &Path) -> Result<File> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening log {}", path.display()))
}

/// Writes `DIR/pids/NAME.pid`: the pid, the program, the stop signal, one per line.
fn write_pid_file(dir: &Path, name: &str, pid: u32, program: &Path, stop_signal: libc::c_int) -> Result<()> {
    let path = pid_path(dir, name);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(&path, format!("{pid}\n{}\n{stop_signal}\n", program.display()))
        .with_context(|| format!("writing {}", path.display()))
}

/// Removes a file, treating "not found" as done.
fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

fn tail_of_file(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return "(no log)".into();
    };
    // The last 16 KiB hold far more than the lines we quote.
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)));
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    last_lines(&String::from_utf8_lossy(&buf), lines)
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_keeps_only_the_end() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("a", 5), "a");
    }

    #[test]
    fn reserved_ports_are_distinct_while_held() {
        let (a, _la) = reserve_port().unwrap();
        let (b, _lb) = reserve_port().unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn an_attached_child_is_stopped_and_its_pid_file_removed() {
        let dir = std::env::temp_dir().join(format!("xtask-proc-test-{}", std::process::id()));
        let mut cmd = Command::new("sleep");
        cmd.arg("60");
        let mut proc = Proc::spawn(&dir, "sleeper", cmd, false).unwrap();
        assert!(!proc.has_exited());
        assert!(Proc::from_pid_file(&dir, "sleeper").unwrap().is_some());
        proc.stop(&dir).unwrap();
        assert!(!pid_path(&dir, "sleeper").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_stop_signal_is_recorded_for_other_processes() {
        let dir = std::env::temp_dir().join(format!("xtask-signal-test-{}", std::process::id()));
        let mut cmd = Command::new("sleep");
        cmd.arg("60");
        let proc = Proc::spawn_with_stop_signal(&dir, "sleeper", cmd, false, libc::SIGINT).unwrap();
        let recorded = Proc::from_pid_file(&dir, "sleeper").unwrap().unwrap();
        assert_eq!(recorded.stop_signal, libc::SIGINT);
        // `sleep` exits on SIGINT as on SIGTERM.
        recorded.stop(&dir).unwrap();
        assert!(!pid_path(&dir, "sleeper").exists());
        drop(proc);
        fs::remove_dir_all(&dir).unwrap();
    }
}

//! The parent's side: spawns `vaultsync render-templates` (which sets its own limits before it
//! reads anything), hands it the request on stdin, reads a bounded answer from stdout, and kills it
//! after [`TIME_LIMIT`]. The child's stderr is only matched against a fixed text, never logged: it
//! could echo values.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::Error;
use super::child::MAX_REQUEST;
use super::limits::{CPU_LIMIT_SECONDS, MEMORY_LIMIT};
use super::protocol::{Line, Request};

/// Wall-clock time the operator waits for the rendering process before killing it (it may wait
/// for a CPU on a busy node, hence more than [`CPU_LIMIT_SECONDS`]).
pub const TIME_LIMIT: Duration = Duration::from_secs(10);

/// Most bytes read from the child's stdout: the rendered values (at most [`super::MAX_OUTPUT`]
/// together) in base64, and the keys.
const MAX_STDOUT: usize = 4 * 1024 * 1024;

/// Most bytes read from the child's stderr, enough to recognise an allocation failure.
const MAX_STDERR: usize = 4096;

/// What Rust's allocation-failure handler writes before aborting.
const ALLOCATION_FAILED: &[u8] = b"memory allocation of ";

static PROGRAM: OnceLock<PathBuf> = OnceLock::new();

/// Sets the program run as `PROGRAM render-templates` to render templates: the `vaultsync` binary.
/// By default it is the running executable; a process that runs the controller inside another
/// binary (the end-to-end tests) points it at `vaultsync`. The first call wins.
pub fn set_program(path: impl Into<PathBuf>) {
    let _ = PROGRAM.set(path.into());
}

fn program() -> io::Result<PathBuf> {
    match PROGRAM.get() {
        Some(path) => Ok(path.clone()),
        None => std::env::current_exe(),
    }
}

/// Renders `request` in a child process, which limits itself to [`MEMORY_LIMIT`] and
/// [`CPU_LIMIT_SECONDS`]; the operator kills it after [`TIME_LIMIT`].
pub async fn render(request: &Request) -> Result<BTreeMap<String, Vec<u8>>, Error> {
    let body = serde_json::to_vec(request).map_err(|_| Error::new("", "the templates' context cannot be encoded"))?;
    if body.len() > MAX_REQUEST {
        return Err(Error::new(
            "",
            format!("the templates and their context exceed {MAX_REQUEST} bytes"),
        ));
    }
    let mut command = Command::new(program().map_err(|e| not_started(&e))?);
    command
        .arg("render-templates")
        // Nothing of the operator's environment (its Vault token may be there) reaches the child.
        // No pre_exec hook and no working directory: std can then start the child with
        // posix_spawn, without a fork of the operator's address space.
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| not_started(&e))?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(Error::new("", "rendering could not start: no pipes to the child"));
    };
    let write = async move {
        // A child that dies early breaks the pipe; its exit status says why.
        let _ = stdin.write_all(&body).await;
    };
    // Read into buffers that outlive a timeout, so a killed child can still be blamed on the
    // template it was rendering.
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let read_out = async {
        // On overflow the pipe closes (`stdout` is dropped), so the child's next write fails.
        let _ = stdout.take(MAX_STDOUT as u64 + 1).read_to_end(&mut out).await;
    };
    let read_err = async {
        let _ = stderr.take(MAX_STDERR as u64).read_to_end(&mut err).await;
    };
    let run = async {
        tokio::join!(write, read_out, read_err);
        child.wait().await
    };
    let finished = tokio::time::timeout(TIME_LIMIT, run).await;
    let lines: Vec<Line> = out
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map_while(|line| serde_json::from_slice(line).ok())
        .collect();
    let running = lines
        .iter()
        .rev()
        .find_map(|line| match line {
            Line::Rendering(key) => Some(key.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let Ok(status) = finished else {
        let _ = child.start_kill();
        let _ = child.wait().await;
        return Err(Error::new(&running, time_limit(TIME_LIMIT.as_secs(), "")));
    };
    let status = status.map_err(|e| Error::new(&running, format!("rendering: {}", e.kind())))?;
    if out.len() > MAX_STDOUT {
        return Err(Error::new(
            &running,
            format!("rendering wrote more than {MAX_STDOUT} bytes"),
        ));
    }
    match lines.into_iter().last() {
        Some(Line::Rendered(values)) if status.success() => return Ok(values),
        Some(Line::Failed { key, message }) => return Err(Error { key, message }),
        _ => {}
    }
    Err(Error::new(&running, failure(status, &err)))
}

/// Why a child that gave no answer failed, from its exit status and the start of its stderr.
fn failure(status: ExitStatus, stderr: &[u8]) -> String {
    match status.signal() {
        Some(libc::SIGABRT) if stderr.starts_with(ALLOCATION_FAILED) => memory_limit(),
        // Not sent by the operator (it kills only on its wall-clock limit, handled before): the
        // kernel's out-of-memory killer, which picks the renderer first (`oom_score_adj`).
        Some(libc::SIGKILL) => format!(
            "rendering was killed for lack of memory (its limit is {} MiB)",
            MEMORY_LIMIT / 1024 / 1024
        ),
        Some(libc::SIGXCPU) => time_limit(CPU_LIMIT_SECONDS, " of CPU"),
        Some(signal) => format!("rendering crashed (signal {signal})"),
        None if status.success() => "rendering gave no answer".to_owned(),
        None => format!(
            "rendering failed unexpectedly (exit code {})",
            status.code().unwrap_or_default()
        ),
    }
}

fn memory_limit() -> String {
    format!(
        "rendering exceeded its memory limit of {} MiB (a value grown without bound?)",
        MEMORY_LIMIT / 1024 / 1024
    )
}

fn time_limit(seconds: u64, what: &str) -> String {
    format!("rendering exceeded its time limit of {seconds} s{what} (work on huge values?)")
}

fn not_started(e: &io::Error) -> Error {
    Error::new("", format!("rendering could not start: {}", e.kind()))
}

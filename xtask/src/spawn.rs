//! Spawning children that either die with this process or outlive it.
//!
//! Attached children (test mode) get `PR_SET_PDEATHSIG=SIGKILL`. The kernel sends that signal
//! when the *thread* that forked the child exits, not the process, so they are all forked by one
//! dedicated thread that never exits. The test harness runs no global teardown, so this is what
//! guarantees no orphans whether the test process returns, panics or is killed.
//!
//! Detached children (`cargo xtask env up`) start in their own session, out of reach of the
//! terminal's signals, and are found again through their pid files.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc::{self, Sender, SyncSender};
use std::sync::{Mutex, OnceLock};
use std::thread;

/// Spawns `cmd` so that it is killed when this process exits.
pub(crate) fn attached(mut cmd: Command) -> io::Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: prctl, getppid and _exit are async-signal-safe and touch no parent memory.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    spawn_on_spawner_thread(cmd)
}

/// Spawns `cmd` in a new session so that it outlives this process.
pub(crate) fn detached(mut cmd: Command) -> io::Result<Child> {
    // SAFETY: setsid is async-signal-safe and touches no parent memory.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

type SpawnRequest = (Command, SyncSender<io::Result<Child>>);

/// Spawns `cmd` from the thread that lives as long as the process (see the module docs).
fn spawn_on_spawner_thread(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        let started = thread::Builder::new()
            .name("vaultsync-env-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
                // Unreachable while the sender lives in a static; never exit regardless.
                loop {
                    thread::park();
                }
            });
        if let Err(err) = started {
            // Sends then fail with "spawner thread is gone".
            eprintln!("cannot start the spawner thread: {err}");
        }
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::sync_channel(1);
    spawner
        .lock()
        .map_err(|_| io::Error::other("spawner lock poisoned"))?
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("spawner thread is gone"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attached_children_are_forked_by_a_thread_that_outlives_the_caller() {
        // Spawn from a short-lived thread; the child must survive that thread's exit.
        let mut child = thread::spawn(|| {
            let mut cmd = Command::new("sleep");
            cmd.arg("30");
            attached(cmd).unwrap()
        })
        .join()
        .unwrap();
        thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child died with its calling thread"
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

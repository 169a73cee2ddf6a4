//! Crash points for the fault matrix (`tests/faults`, issue 17): the operator killed at a precise
//! step of a rotation. Only in debug builds — the binary the tests run: a process started with
//! `VAULTSYNC_CRASH_FILE=PATH` aborts at step `S` when the file `PATH` exists and holds `S`,
//! removing it first so that the restarted process runs on. Release builds compile [`at`] to
//! nothing; no flag or value a user sets reaches it.

/// A step of a rotation: new credentials issued, recorded in the status, written to the Secret,
/// a superseded lease revoked.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    AfterIssue,
    AfterStatus,
    AfterSecret,
    DuringRevoke,
}

impl Step {
    /// The name the crash file holds.
    pub fn name(self) -> &'static str {
        match self {
            Step::AfterIssue => "after-issue",
            Step::AfterStatus => "after-status",
            Step::AfterSecret => "after-secret",
            Step::DuringRevoke => "during-revoke",
        }
    }
}

/// Aborts the process here when the test's crash file asks for `step` (debug builds only).
pub fn at(step: Step) {
    #[cfg(debug_assertions)]
    {
        let Some(path) = std::env::var_os("VAULTSYNC_CRASH_FILE") else {
            return;
        };
        let Ok(armed) = std::fs::read_to_string(&path) else {
            return;
        };
        if armed.trim() == step.name() && std::fs::remove_file(&path).is_ok() {
            eprintln!("crash point {}: aborting (test hook)", step.name());
            std::process::abort();
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = step;
}

//! The limits of the rendering process. It sets them on itself first thing, before it reads the
//! request, so nothing a template does escapes them. (Setting them from the operator between fork
//! and exec would work too, but forces a fork of the operator's whole address space: with a
//! 250 MiB operator a render then costs about 20 ms instead of 3.)

use std::io;

/// Address space of the rendering process. A template growing a string without bound fails there,
/// far from the operator's own memory.
pub const MEMORY_LIMIT: u64 = 256 * 1024 * 1024;

/// CPU seconds of the rendering process: fuel already stops long loops; this stops a few
/// instructions that each work on huge values.
pub const CPU_LIMIT_SECONDS: u64 = 2;

/// Applies [`MEMORY_LIMIT`] and [`CPU_LIMIT_SECONDS`], forbids core dumps (they would hold the
/// values) and files, and puts the process first in the out-of-memory killer's queue should the
/// pod or the node run short all the same.
pub fn apply() -> io::Result<()> {
    set(libc::RLIMIT_AS, MEMORY_LIMIT, MEMORY_LIMIT)?;
    set(libc::RLIMIT_CPU, CPU_LIMIT_SECONDS, CPU_LIMIT_SECONDS + 1)?;
    set(libc::RLIMIT_CORE, 0, 0)?;
    set(libc::RLIMIT_FSIZE, 0, 0)?;
    // Best effort: a kernel without it still enforces the limits above.
    let _ = std::fs::write("/proc/self/oom_score_adj", "1000");
    Ok(())
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
type Resource = libc::c_int;

fn set(resource: Resource, soft: libc::rlim_t, hard: libc::rlim_t) -> io::Result<()> {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on valid, owned structs.
    unsafe {
        if libc::getrlimit(resource, &mut current) != 0 {
            return Err(io::Error::last_os_error());
        }
        // An unprivileged process cannot raise its hard limit: never ask for more than it has.
        let hard = hard.min(current.rlim_max);
        let wanted = libc::rlimit {
            rlim_cur: soft.min(hard),
            rlim_max: hard,
        };
        if libc::setrlimit(resource, &wanted) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

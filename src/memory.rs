//! Keeping the operator's resident memory close to what it uses (glibc only; a no-op elsewhere).
//!
//! glibc gives threads their own malloc arenas (up to eight per core) and keeps freed memory in
//! them. After a burst of syncs that memory is free but still resident; fewer arenas and a
//! periodic trim hand it back.

use std::time::Duration;

/// How often free heap memory is returned to the system.
const TRIM_EVERY: Duration = Duration::from_secs(30);

/// Limits malloc to two arenas. Call before any other thread starts.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; no other thread allocates yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns free heap memory to the system every [`TRIM_EVERY`], forever.
pub async fn trim_periodically() {
    let mut tick = tokio::time::interval(TRIM_EVERY);
    loop {
        tick.tick().await;
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim is thread-safe and only releases memory malloc holds free.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

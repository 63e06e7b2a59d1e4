//! Keeping the resident set small on glibc (an edge PC runs relais for months).
//!
//! glibc gives each thread that allocates its own malloc arena (up to 8 per
//! core) and keeps freed memory for reuse; for a long-running gateway with a
//! few busy threads that mostly shows up as RSS. Two arenas are plenty, and
//! the memory used while parsing a large configuration is handed back once
//! the gateway runs. Both are no-ops on other C libraries.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // SAFETY: see the call sites
unsafe extern "C" {
    fn mallopt(param: i32, value: i32) -> i32;
    fn malloc_trim(pad: usize) -> i32;
}

/// Caps glibc's malloc arenas at 2 (`M_ARENA_MAX`). Call before threads start.
#[allow(unsafe_code)]
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const M_ARENA_MAX: i32 = -8;
        // SAFETY: mallopt only changes allocator tuning; called before other threads exist.
        unsafe {
            mallopt(M_ARENA_MAX, 2);
        }
    }
}

/// Returns freed heap memory to the operating system (`malloc_trim(0)`).
#[allow(unsafe_code)]
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim is thread-safe and only releases free memory.
        unsafe {
            malloc_trim(0);
        }
    }
}

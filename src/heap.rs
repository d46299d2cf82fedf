//! Giving freed heap pages back to the OS after a (re)load.
//!
//! Parsing a million-token config allocates and frees several hundred MiB of small blocks (the
//! element tree, the token list). glibc keeps freed pages that do not sit at the top of its heap,
//! and the token map's records are allocated in between, so without a trim the RSS after a load stays
//! ≈ 100 bytes per token above what the map holds (`benches/RESULTS.md`: 329 → 225 MiB at 1M tokens).

/// Returns free heap pages to the OS: glibc's `malloc_trim(0)`, which walks every arena and
/// releases the whole free pages it finds. A no-op with other C libraries.
pub fn release_free_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim has no preconditions; it only reads and shrinks glibc's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

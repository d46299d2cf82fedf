//! What the emulated engine "finds": the EICAR test string in bytes or files, files outside the scan
//! root, and URLs on a small built-in deny list. Pure functions, so the rules are unit-tested here and
//! the routes only translate verdicts into the protocol's words.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The 68-byte core of the EICAR anti-malware test file. Real engines demand it at the start of a
/// short file; the emulator finds it anywhere, so a test can embed it in a larger payload.
pub const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// The detection name real engines report for [`EICAR`].
pub const EICAR_DETECTION: &str = "EICAR-Test-File";

/// Hosts that `checkurl` reports as malicious, with their subdomains. Test-only names (RFC 2606
/// `.example` / `.test`), so nothing real is ever flagged.
pub const MALICIOUS_HOSTS: &[&str] = &["malware.testing.google.test", "malicious.example"];

/// Hosts that `checkurl` reports as phishing, with their subdomains.
pub const PHISHING_HOSTS: &[&str] = &["phishing.example"];

/// Files are read in chunks of this size, so `scanfile` never holds a large file in memory.
const FILE_CHUNK_BYTES: usize = 64 * 1024;

/// The outcome of one scan, in protocol-neutral terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing found.
    Clean,
    /// Something found; the name is the engine's detection name.
    Detect(&'static str),
    /// The object was not scanned, and why.
    NonScanned(Reason),
}

/// Why an object was not scanned: the subset of the engine's reasons the emulator can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The request's timeout was shorter than the configured scan delay.
    Canceled,
    /// The path is outside the scan root, or cannot be opened.
    AccessDenied,
    /// The path is not a regular file (a directory, a socket…).
    Skipped,
}

impl Reason {
    /// The v3.0 / v1 form, inside `NON_SCANNED (…)`.
    pub fn upper(self) -> &'static str {
        match self {
            Reason::Canceled => "CANCELED",
            Reason::AccessDenied => "ACCESS DENIED",
            Reason::Skipped => "SKIPPED",
        }
    }

    /// The v3.1 form, in the separate `reason` field.
    pub fn title(self) -> &'static str {
        match self {
            Reason::Canceled => "Canceled",
            Reason::AccessDenied => "Access denied",
            Reason::Skipped => "Skipped",
        }
    }
}

/// Whether `bytes` contain the EICAR string anywhere.
pub fn contains_eicar(bytes: &[u8]) -> bool {
    // Jump between candidate first bytes instead of comparing every window: payloads reach 100 MiB.
    let mut from = 0;
    while let Some(i) = bytes[from..].iter().position(|&b| b == EICAR[0]) {
        let at = from + i;
        if bytes[at..].starts_with(EICAR) {
            return true;
        }
        from = at + 1;
    }
    false
}

/// Scans a memory object.
pub fn scan_bytes(bytes: &[u8]) -> Verdict {
    if contains_eicar(bytes) {
        Verdict::Detect(EICAR_DETECTION)
    } else {
        Verdict::Clean
    }
}

/// Scans the file `requested` names if it lies under `root`. Everything runs on the blocking pool:
/// resolving, opening and reading are filesystem calls that can stall (a hung NFS mount), and none
/// of them may hold an async worker.
pub async fn scan_under(root: Option<&Path>, requested: &str) -> (Verdict, u64) {
    const DENIED: (Verdict, u64) = (Verdict::NonScanned(Reason::AccessDenied), 0);
    let Some(root) = root.map(Path::to_owned) else {
        return DENIED;
    };
    let requested = requested.to_owned();
    let scan = move || match resolve_under(Some(&root), &requested) {
        Some(resolved) => scan_file(&root, &resolved),
        None => DENIED,
    };
    tokio::task::spawn_blocking(scan).await.unwrap_or(DENIED)
}

/// Resolves `requested` and checks that it lies under `root` (already canonical). Returns `None` when
/// it does not, or when it cannot be resolved at all: a missing file gets the same answer as a file
/// outside the root, so clients cannot probe which paths exist outside it. Blocking.
pub fn resolve_under(root: Option<&Path>, requested: &str) -> Option<PathBuf> {
    let root = root?;
    let requested = Path::new(requested);
    // A relative path would resolve against the emulator's working directory, which clients cannot see.
    if !requested.is_absolute() {
        return None;
    }
    // canonicalize resolves `..` and every symlink, so the prefix test below cannot be walked around.
    let resolved = std::fs::canonicalize(requested).ok()?;
    resolved.starts_with(root).then_some(resolved)
}

/// Scans a file that [`resolve_under`] accepted under `root`. Returns the verdict and the bytes
/// read, which the statistics count as processed data. Blocking.
///
/// The path may have changed since it was resolved (a folder or the file swapped for a symlink, the
/// file for a FIFO), so what counts is what gets opened: it is opened once, without following a
/// final symlink and without waiting for a FIFO's writer, and then checked through its descriptor:
/// its real path must still lie under `root`, and it must be a regular file.
pub fn scan_file(root: &Path, path: &Path) -> (Verdict, u64) {
    let opened = open_under(root, path);
    let scanned = opened.and_then(|file| match file {
        Some(file) => scan_open_file(file),
        None => Ok((Verdict::NonScanned(Reason::Skipped), 0)),
    });
    scanned.unwrap_or((Verdict::NonScanned(Reason::AccessDenied), 0))
}

/// Opens `path` and checks what was opened: `Ok(None)` for something under `root` that is not a
/// regular file, an error for anything outside `root`.
fn open_under(root: &Path, path: &Path) -> io::Result<Option<File>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    // The kernel's name for the open file: every symlink on the way already resolved. Checked
    // before the type, so nothing about a file outside the root is revealed.
    let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    if !real.starts_with(root) {
        return Err(io::ErrorKind::PermissionDenied.into());
    }
    Ok(file.metadata()?.is_file().then_some(file))
}

fn scan_open_file(mut file: File) -> io::Result<(Verdict, u64)> {
    // `window` keeps the last EICAR.len() - 1 bytes of the previous chunk, so a match that straddles
    // two chunks is still found.
    let mut window = Vec::with_capacity(FILE_CHUNK_BYTES + EICAR.len());
    let mut chunk = vec![0; FILE_CHUNK_BYTES];
    let mut total = 0u64;
    let mut found = false;
    loop {
        let n = file.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if !found {
            window.extend_from_slice(&chunk[..n]);
            found = contains_eicar(&window);
            let keep = window.len().min(EICAR.len() - 1);
            window.drain(..window.len() - keep);
        }
    }
    let verdict = if found {
        Verdict::Detect(EICAR_DETECTION)
    } else {
        Verdict::Clean
    };
    Ok((verdict, total))
}

/// Checks a URL's host against the deny lists. Malicious wins over phishing, as in the engine's
/// priority order.
pub fn check_url(url: &str) -> Verdict {
    let host = url_host(url).trim_end_matches('.').to_ascii_lowercase();
    let listed = |hosts: &[&str]| {
        hosts
            .iter()
            .any(|h| host == *h || host.strip_suffix(h).is_some_and(|sub| sub.ends_with('.')))
    };
    if listed(MALICIOUS_HOSTS) {
        Verdict::Detect("MALICIOUS_URL")
    } else if listed(PHISHING_HOSTS) {
        Verdict::Detect("PHISHING_URL")
    } else {
        Verdict::Clean
    }
}

/// The host part of a URL, scheme optional. Written out rather than parsed with `http::Uri`, which
/// rejects scheme-less URLs and characters that URL checkers are routinely given.
fn url_host(url: &str) -> &str {
    let rest = url.trim().split_once("://").map_or(url.trim(), |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eicar_is_the_68_byte_core() {
        assert_eq!(EICAR.len(), 68);
    }

    #[test]
    fn finds_eicar_anywhere() {
        assert!(contains_eicar(EICAR));
        let mut padded = b"XXXX prefix X5O".to_vec();
        padded.extend_from_slice(EICAR);
        padded.extend_from_slice(b" suffix");
        assert!(contains_eicar(&padded));
        assert!(!contains_eicar(&EICAR[..67]));
        assert!(!contains_eicar(b""));
    }

    #[test]
    fn url_hosts() {
        assert_eq!(
            url_host("http://user:pw@Phishing.Example:8080/a?b#c"),
            "Phishing.Example"
        );
        assert_eq!(url_host("phishing.example/login"), "phishing.example");
        assert_eq!(url_host("https://[::1]:443/"), "::1");
        assert_eq!(url_host("ftp://host?x"), "host");
    }

    #[test]
    fn deny_list_matches_hosts_and_subdomains_only() {
        assert_eq!(
            check_url("http://malicious.example/x"),
            Verdict::Detect("MALICIOUS_URL")
        );
        assert_eq!(
            check_url("https://www.phishing.example."),
            Verdict::Detect("PHISHING_URL")
        );
        assert_eq!(
            check_url("http://malware.testing.google.test/testing/malware/"),
            Verdict::Detect("MALICIOUS_URL")
        );
        assert_eq!(check_url("http://notphishing.example/"), Verdict::Clean);
        assert_eq!(
            check_url("http://example.com/?phishing.example"),
            Verdict::Clean
        );
    }

    #[test]
    fn resolve_under_rejects_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("in.txt"), b"x").unwrap();
        std::fs::write(dir.path().join("out.txt"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("out.txt"), root.join("link")).unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        let s = |p: PathBuf| p.to_str().unwrap().to_owned();

        assert!(resolve_under(Some(&root), &s(root.join("in.txt"))).is_some());
        assert!(resolve_under(Some(&root), &s(root.join("../out.txt"))).is_none());
        assert!(resolve_under(Some(&root), &s(root.join("link"))).is_none());
        assert!(resolve_under(Some(&root), &s(root.join("missing"))).is_none());
        assert!(resolve_under(Some(&root), "in.txt").is_none());
        assert!(resolve_under(None, &s(root.join("in.txt"))).is_none());
    }

    #[test]
    fn file_scan_finds_eicar_across_chunk_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let mut data = vec![b'a'; FILE_CHUNK_BYTES - 10];
        data.extend_from_slice(EICAR);
        std::fs::write(&path, &data).unwrap();
        let expected = (Verdict::Detect(EICAR_DETECTION), data.len() as u64);
        assert_eq!(scan_file(dir.path(), &path), expected);
        assert_eq!(
            scan_file(dir.path(), dir.path()),
            (Verdict::NonScanned(Reason::Skipped), 0)
        );
    }

    /// Builds `dir/root/sub/file` (clean) and `dir/outside/file` (EICAR) and returns the canonical
    /// root with the resolved inside path: the state right after [`resolve_under`].
    fn race_setup(dir: &Path) -> (PathBuf, PathBuf) {
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/file"), b"clean").unwrap();
        std::fs::create_dir(dir.join("outside")).unwrap();
        std::fs::write(dir.join("outside/file"), EICAR).unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        let requested = root.join("sub/file");
        let resolved = resolve_under(Some(&root), requested.to_str().unwrap()).unwrap();
        (root, resolved)
    }

    #[test]
    fn a_folder_swapped_for_a_symlink_after_resolving_is_denied() {
        let dir = tempfile::tempdir().unwrap();
        let (root, resolved) = race_setup(dir.path());
        let sub = resolved.parent().unwrap();
        std::fs::remove_dir_all(sub).unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), sub).unwrap();
        let denied = (Verdict::NonScanned(Reason::AccessDenied), 0);
        assert_eq!(scan_file(&root, &resolved), denied);
    }

    #[test]
    fn a_file_swapped_for_a_symlink_after_resolving_is_denied() {
        let dir = tempfile::tempdir().unwrap();
        let (root, resolved) = race_setup(dir.path());
        std::fs::remove_file(&resolved).unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside/file"), &resolved).unwrap();
        let denied = (Verdict::NonScanned(Reason::AccessDenied), 0);
        assert_eq!(scan_file(&root, &resolved), denied);
    }

    /// A FIFO with no writer: opening it for reading would block for ever.
    fn fifo(path: &Path) {
        let made = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(made.success());
    }

    /// Runs a scan on the blocking pool, failing the test if it hangs.
    async fn within_deadline(root: PathBuf, path: PathBuf) -> (Verdict, u64) {
        let scan = tokio::task::spawn_blocking(move || scan_file(&root, &path));
        let done = tokio::time::timeout(std::time::Duration::from_secs(10), scan).await;
        done.expect("scanning a FIFO hung").unwrap()
    }

    #[tokio::test]
    async fn a_file_swapped_for_a_fifo_is_skipped_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let (root, resolved) = race_setup(dir.path());
        std::fs::remove_file(&resolved).unwrap();
        fifo(&resolved);
        let skipped = (Verdict::NonScanned(Reason::Skipped), 0);
        assert_eq!(
            within_deadline(root.clone(), resolved.clone()).await,
            skipped
        );

        // A FIFO outside the root, reached through a swapped folder: denied, and no hang either.
        let sub = resolved.parent().unwrap();
        fifo(&dir.path().join("outside/fifo"));
        std::fs::remove_dir_all(sub).unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), sub).unwrap();
        let denied = (Verdict::NonScanned(Reason::AccessDenied), 0);
        assert_eq!(within_deadline(root, sub.join("fifo")).await, denied);
    }

    #[tokio::test]
    async fn scan_under_resolves_and_scans_on_the_blocking_pool() {
        let dir = tempfile::tempdir().unwrap();
        let (root, resolved) = race_setup(dir.path());
        std::os::unix::fs::symlink(dir.path().join("outside/file"), root.join("link")).unwrap();
        let s = |p: PathBuf| p.to_str().unwrap().to_owned();
        let clean = (Verdict::Clean, 5);
        assert_eq!(scan_under(Some(&root), &s(resolved)).await, clean);
        let denied = (Verdict::NonScanned(Reason::AccessDenied), 0);
        assert_eq!(scan_under(Some(&root), &s(root.join("link"))).await, denied);
        let outside = s(dir.path().join("outside/file"));
        assert_eq!(scan_under(Some(&root), &outside).await, denied);
        assert_eq!(scan_under(None, &s(root.join("sub/file"))).await, denied);
    }
}

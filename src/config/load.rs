//! Reading a config from disk: size cap, parse, path resolution, key file.

use std::io::Read;
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::Xxh3;

use super::{validate, ConfigErrors, Settings, TokenEntry, MAX_CONFIG_BYTES};
use crate::auth::token::{KeyError, TokenKey};

/// A config read from disk, ready to apply. Its Debug leaves out the content hash, a digest of the
/// key file among others.
pub struct Loaded {
    /// The validated settings, with relative paths resolved against the config folder.
    pub settings: Settings,
    /// The HMAC key; `None` when UseAccessToken is 0 and no key file exists.
    pub key: Option<TokenKey>,
    /// [`content_hash`] of the config bytes and the files they name: a reload whose hash is
    /// unchanged does nothing.
    pub content_hash: u128,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("settings", &self.settings)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Why a config could not be loaded. The last good config stays in force.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file is missing or unreadable.
    #[error("{}: cannot read config: {source}", path.display())]
    Read {
        /// The config path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is over [`MAX_CONFIG_BYTES`].
    #[error("{}: config is larger than {MAX_CONFIG_BYTES} bytes", path.display())]
    TooLarge {
        /// The config path.
        path: PathBuf,
    },
    /// The file is not valid; every error is listed.
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// The key file is missing, unreadable or malformed.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Reads the config file at `path` (capped at [`MAX_CONFIG_BYTES`]) into bytes.
pub fn read_capped(path: &Path) -> Result<Vec<u8>, LoadError> {
    let mut bytes = Vec::new();
    read_capped_into(path, &mut bytes)?;
    Ok(bytes)
}

/// [`read_capped`] into `bytes`, replacing what it held and using its capacity.
pub fn read_capped_into(path: &Path, bytes: &mut Vec<u8>) -> Result<(), LoadError> {
    let read_err = |source| LoadError::Read {
        path: path.to_owned(),
        source,
    };
    bytes.clear();
    let file = std::fs::File::open(path).map_err(read_err)?;
    // Sized from the metadata: growing a Vec to a 170 MB file doubles and copies it ~28 times.
    let size = file.metadata().map_or(0, |m| m.len().min(MAX_CONFIG_BYTES));
    bytes.reserve(usize::try_from(size).unwrap_or(0) + 1);
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(LoadError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// A reload's two large buffers, kept for the next reload: the file's bytes (170 MB at a million
/// tokens) and the list of its tokens (152 MB). Each is one block of its own that glibc unmaps when
/// it is freed, so a reload that allocates them afresh faults every page of them in again, a sixth
/// of a 1M reload's CPU (`benches/RESULTS.md`). Both are kept empty, capacity only; the reload
/// loop drops them after a quiet spell ([`super::watch::KEEP_BUFFERS`]), so they cost memory only
/// between reloads that come close together.
#[derive(Default)]
pub struct Buffers {
    /// For the config file's bytes.
    pub file: Vec<u8>,
    /// For the tokens validation reads (empty).
    pub tokens: Vec<TokenEntry>,
}

impl Buffers {
    /// Bytes held.
    pub fn capacity_bytes(&self) -> usize {
        self.file.capacity() + self.tokens.capacity() * std::mem::size_of::<TokenEntry>()
    }
}

/// The file's bytes as text; anything but UTF-8 is one error at 1:1.
pub fn utf8<'b>(bytes: &'b [u8], label: &str) -> Result<&'b str, ConfigErrors> {
    // simdutf8 checks a 170 MB file in a fraction of std's time; std's check runs only to say
    // where a fault is.
    if let Ok(text) = simdutf8::basic::from_utf8(bytes) {
        return Ok(text);
    }
    std::str::from_utf8(bytes).map_err(|e| {
        ConfigErrors(vec![validate::ConfigError {
            file: label.to_owned(),
            line: 1,
            column: 1,
            path: String::new(),
            rule: format!("file is not UTF-8: {e}"),
        }])
    })
}

/// Parses config text and resolves its relative paths against `base` (the config file's folder).
pub fn parse_at(text: &str, label: &str, base: &Path) -> Result<Settings, ConfigErrors> {
    parse_at_into(text, label, base, Vec::new())
}

/// [`parse_at`], reading the tokens into `tokens`' capacity (see [`validate::parse_into`]).
fn parse_at_into(
    text: &str,
    label: &str,
    base: &Path,
    tokens: Vec<TokenEntry>,
) -> Result<Settings, ConfigErrors> {
    let mut settings = validate::parse_into(text, label, tokens)?;
    let resolve = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    resolve(&mut settings.gateway.token_key_file);
    if let crate::config::StateStore::Sqlite(state) = &mut settings.gateway.sessions.state_store {
        resolve(state);
    }
    if let Some(ca) = settings.gateway.upstream_ca_file.as_mut() {
        resolve(ca);
    }
    if let Some(tls) = settings.server.tls.as_mut() {
        resolve(&mut tls.cert);
        resolve(&mut tls.key);
    }
    Ok(settings)
}

/// Reads and validates the config at `path`, resolving paths, without the key file: what [`load`]
/// does first, and all that `token list` and `check` need. Returns the bytes read too.
pub fn read_settings(path: &Path) -> Result<(Vec<u8>, Settings), LoadError> {
    let bytes = read_capped(path)?;
    let settings = settings_of(path, &bytes, Vec::new())?;
    Ok((bytes, settings))
}

/// Validates bytes read from `path`, resolving paths against its folder, with the tokens read into
/// `tokens`' capacity.
fn settings_of(path: &Path, bytes: &[u8], tokens: Vec<TokenEntry>) -> Result<Settings, LoadError> {
    let label = path.display().to_string();
    let text = utf8(bytes, &label).map_err(LoadError::Invalid)?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse_at_into(text, &label, base, tokens).map_err(LoadError::Invalid)
}

/// Loads the config at `path`: reads it, validates it, resolves paths and reads the key file.
///
/// The key file is required when UseAccessToken is 1, and read when present otherwise.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    let bytes = read_capped(path)?;
    load_read(path, &bytes, hash_config(&bytes), Vec::new())
}

/// [`load`] for bytes already read from `path`, with `hashed` = [`hash_config`] of them: a reload
/// has read and hashed the file to see whether it changed, and does not do either twice. The
/// tokens are read into `tokens`' capacity (a reload passes the last one's list).
pub fn load_read(
    path: &Path,
    bytes: &[u8],
    hashed: Xxh3,
    tokens: Vec<TokenEntry>,
) -> Result<Loaded, LoadError> {
    let settings = settings_of(path, bytes, tokens)?;
    let key_path = &settings.gateway.token_key_file;
    let key = match std::fs::metadata(key_path) {
        Ok(_) => Some(TokenKey::read(key_path)?),
        Err(source) if settings.auth.use_access_token => {
            return Err(LoadError::Key(KeyError::Read {
                path: key_path.clone(),
                source,
            }))
        }
        Err(_) => None,
    };
    let content_hash = content_hash_with(hashed, key_path, settings.server.tls.as_ref());
    Ok(Loaded {
        settings,
        key,
        content_hash,
    })
}

/// A 128-bit XXH3 over the config bytes and the files they refer to: the key file and the TLS
/// certificate and key. Replacing any of them is a change. Unreadable files hash as empty; loading
/// reports them.
///
/// The hash only tells a reload whether anything changed, and never leaves the process: whoever
/// could make two files collide could write the config anyway. SHA-256 was 16 % of a 1M-token
/// reload's samples; with XXH3 a reload took 15–25 % less CPU (`benches/RESULTS.md`).
///
/// The same config bytes always name the same files, so a reload can compare this hash, computed
/// with the paths of the config in force, before it parses anything.
pub fn content_hash(config: &[u8], key_file: &Path, tls: Option<&super::TlsFiles>) -> u128 {
    content_hash_with(hash_config(config), key_file, tls)
}

/// The first part of [`content_hash`]: the config bytes alone (a large config's hash is most of the
/// cost, so a reload computes it once).
pub fn hash_config(config: &[u8]) -> Xxh3 {
    let mut hasher = Xxh3::new();
    add(&mut hasher, config);
    hasher
}

/// The rest of [`content_hash`]: the files the config names, added to [`hash_config`]'s state.
pub fn content_hash_with(mut hasher: Xxh3, key_file: &Path, tls: Option<&super::TlsFiles>) -> u128 {
    add(&mut hasher, &std::fs::read(key_file).unwrap_or_default());
    if let Some(tls) = tls {
        add(&mut hasher, &std::fs::read(&tls.cert).unwrap_or_default());
        add(&mut hasher, &std::fs::read(&tls.key).unwrap_or_default());
    }
    hasher.digest128()
}

/// Each part with its length first, so that moving bytes from one file to the next is a change.
fn add(hasher: &mut Xxh3, bytes: &[u8]) {
    hasher.update(&(bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty file reads as no bytes (its size sizes the buffer: `0 + 1`), into a fresh buffer
    /// or one that held a longer file.
    #[test]
    fn an_empty_file_reads_as_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.xml");
        std::fs::write(&path, "").unwrap();
        assert_eq!(read_capped(&path).unwrap(), b"");
        let mut held = b"<Configuration/>".to_vec();
        read_capped_into(&path, &mut held).unwrap();
        assert_eq!(held, b"");
    }

    /// A file that is not UTF-8 is one error at 1:1 that says where the fault is, in std's words.
    #[test]
    fn text_that_is_not_utf8_is_reported_with_its_place() {
        assert_eq!(utf8("<a>é</a>".as_bytes(), "c.xml"), Ok("<a>é</a>"));
        let errors = utf8(b"<a>\xff</a>", "c.xml").unwrap_err();
        assert_eq!(
            errors.to_string(),
            "c.xml:1:1: file is not UTF-8: invalid utf-8 sequence of 1 bytes from index 3"
        );
        let cut = utf8(b"<a>\xc3", "c.xml").unwrap_err();
        assert_eq!(
            cut.to_string(),
            "c.xml:1:1: file is not UTF-8: incomplete utf-8 byte sequence from index 3"
        );
    }
}

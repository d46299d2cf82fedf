//! Tokens at rest: minting, the keyed digest stored as `Value`, and the key file.
//!
//! `Value = base64(HMAC-SHA-512(key, token))`: 88 characters. The key is 32 random bytes, stored as
//! one line of standard base64 in `TokenKeyFile`. That format is a public contract so other tools can
//! compute a Value.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;

use crate::config::perms::{self, Access};

/// A token digest: the map key and what `Value` encodes.
pub type Digest = [u8; 64];

/// Length of the HMAC key in bytes.
pub const KEY_BYTES: usize = 32;

/// Random base62 characters after `sg_` in a minted token: 44 × log2(62) ≈ 262 bits.
const MINTED_CHARS: usize = 44;

/// SHA-256 of the key bytes in the Docker demo's `docker/config/scangate.key`. That key and the
/// demo token are published, so a gateway that uses the key is flagged at start-up.
const DEMO_KEY_SHA256: [u8; 32] = [
    0x9e, 0x71, 0x18, 0x56, 0x6d, 0x18, 0xd1, 0x4d, 0x62, 0xaf, 0xae, 0x73, 0xed, 0x35, 0xec, 0x09,
    0x00, 0x7c, 0x2d, 0xcf, 0x96, 0x42, 0xaf, 0x10, 0xee, 0x65, 0x1e, 0x01, 0x91, 0x8a, 0x1a, 0x7c,
];

/// Longest token scangate will hash. Scan Engine's plaintext rule caps supplied tokens at 100; minted
/// ones are 47. Anything longer is rejected before hashing, so a client cannot make us hash megabytes.
pub const MAX_TOKEN_BYTES: usize = 256;

/// The HMAC key, with the keyed state precomputed so a digest costs two compressions, not four.
/// ring's assembly SHA-512 does it in fewer instructions than the RustCrypto crates (criterion
/// `digest` bench, benches/RESULTS.md).
#[derive(Clone)]
pub struct TokenKey {
    mac: ring::hmac::Key,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

/// Why a key file could not be used. Every variant names the path.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file is missing or unreadable.
    #[error("{}: cannot read token key file: {source}", path.display())]
    Read {
        /// The key file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is empty or is not one line of base64 of 32 bytes.
    #[error("{}: token key file must hold one line: the standard base64 of 32 random bytes", path.display())]
    Malformed {
        /// The key file.
        path: PathBuf,
    },
    /// Creating a new key file failed.
    #[error("{}: cannot create token key file: {source}", path.display())]
    Create {
        /// The key file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl TokenKey {
    /// A key from raw bytes.
    pub fn from_bytes(key: &[u8; KEY_BYTES]) -> TokenKey {
        TokenKey {
            mac: ring::hmac::Key::new(ring::hmac::HMAC_SHA512, key),
        }
    }

    /// Reads the key file: one line, standard base64 of 32 bytes.
    pub fn read(path: &Path) -> Result<TokenKey, KeyError> {
        read_key_bytes(path).map(|bytes| TokenKey::from_bytes(&bytes))
    }

    /// Reads the key file, or creates it (mode 0600, fresh random key) when it does not exist.
    pub fn read_or_create(path: &Path) -> Result<TokenKey, KeyError> {
        let (key, new) = Self::read_or_new(path)?;
        if let Some(new) = new {
            new.write(path, None)?;
        }
        Ok(key)
    }

    /// Reads the key file, or generates a key in memory when the file does not exist. The second
    /// value is then that key, for the caller to [`NewKey::write`] once it decides to go ahead.
    pub fn read_or_new(path: &Path) -> Result<(TokenKey, Option<NewKey>), KeyError> {
        match std::fs::metadata(path) {
            Ok(_) => Ok((Self::read(path)?, None)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let new = NewKey::generate();
                Ok((new.key(), Some(new)))
            }
            Err(source) => Err(KeyError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// HMAC-SHA-512 of a token.
    pub fn digest(&self, token: &[u8]) -> Digest {
        let tag = ring::hmac::sign(&self.mac, token);
        tag.as_ref()
            .try_into()
            .expect("HMAC-SHA-512 tags are 64 bytes")
    }

    /// The `Value` text for a token: base64 of its digest, 88 characters.
    pub fn value(&self, token: &str) -> String {
        encode_value(&self.digest(token.as_bytes()))
    }
}

/// The 32 key bytes in the key file at `path`.
fn read_key_bytes(path: &Path) -> Result<[u8; KEY_BYTES], KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    let bytes = B64.decode(text.trim()).ok();
    bytes
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| KeyError::Malformed {
            path: path.to_owned(),
        })
}

/// Whether the key file at `path` holds the public Docker demo key. An unreadable or malformed
/// file is not it.
pub fn is_demo_key(path: &Path) -> bool {
    use sha2::Digest as _;
    read_key_bytes(path).is_ok_and(|bytes| sha2::Sha256::digest(bytes)[..] == DEMO_KEY_SHA256)
}

/// A fresh key that exists only in memory until [`NewKey::write`] creates its file. `token add` uses
/// it so that a command whose result is refused leaves no key file behind.
pub struct NewKey {
    bytes: [u8; KEY_BYTES],
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewKey(<redacted>)")
    }
}

impl NewKey {
    /// 32 bytes from the OS RNG.
    pub fn generate() -> NewKey {
        let mut bytes = [0u8; KEY_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        NewKey { bytes }
    }

    /// The key, for computing digests before the file exists.
    pub fn key(&self) -> TokenKey {
        TokenKey::from_bytes(&self.bytes)
    }

    /// Creates the key file and syncs it. Fails if the file already exists, so a key is never
    /// overwritten. Returns the owner, group and mode it got.
    ///
    /// The file starts as mode 0600. `like` is the config's: the key gets its owner and group as
    /// far as this user may give them, and mode 0640 when it got the group and that group may read
    /// the config, so a gateway running in the config's group can read the key too.
    pub fn write(&self, path: &Path, like: Option<Access>) -> Result<Access, KeyError> {
        let err = |source| KeyError::Create {
            path: path.to_owned(),
            source,
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut file = opts.open(path).map_err(err)?;
        if let Some(like) = like {
            perms::copy_owner(&file, like.uid, like.gid);
            let got = Access::of(&file.metadata().map_err(err)?);
            if got.gid == like.gid && like.mode & 0o040 != 0 {
                let group_read = std::os::unix::fs::PermissionsExt::from_mode(0o640);
                file.set_permissions(group_read).map_err(err)?;
            }
        }
        writeln!(file, "{}", B64.encode(self.bytes)).map_err(err)?;
        file.sync_all().map_err(err)?;
        // Make the new name durable too; a failure here leaves a written, synced file.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(Access::of(&file.metadata().map_err(err)?))
    }
}

/// `Value` text for a digest.
pub fn encode_value(digest: &Digest) -> String {
    B64.encode(digest)
}

/// Decodes a `Value`: exactly 88 characters of standard base64 encoding 64 bytes, canonically
/// written: 86 characters of the alphabet, the last of them with its low four bits zero, then
/// `==`. That is what base64's `STANDARD` engine accepts for 64 bytes, decoded here in one pass
/// without its general machinery, 4.2 % fewer instructions for a token file's parse
/// (`benches/RESULTS.md`; a test holds the two to the same answers).
pub fn decode_value(value: &str) -> Option<Digest> {
    let text: &[u8; 88] = value.as_bytes().try_into().ok()?;
    let (body, pad) = text.split_at(86);
    if pad != b"==" {
        return None;
    }
    let mut out = [0u8; 64];
    // An invalid character reads as 0xff, so a high bit in `seen` marks one.
    let mut seen = 0u8;
    for (chars, bytes) in body.chunks_exact(4).zip(out.chunks_exact_mut(3)) {
        let [a, b, c, d] = [0, 1, 2, 3].map(|i| BASE64_VALUE[usize::from(chars[i])]);
        seen |= a | b | c | d;
        let group = u32::from(a) << 18 | u32::from(b) << 12 | u32::from(c) << 6 | u32::from(d);
        bytes.copy_from_slice(&group.to_be_bytes()[1..]);
    }
    let (a, b) = (
        BASE64_VALUE[usize::from(body[84])],
        BASE64_VALUE[usize::from(body[85])],
    );
    seen |= a | b;
    if seen & 0xc0 != 0 || b & 0x0f != 0 {
        return None;
    }
    out[63] = a << 2 | b >> 4;
    Some(out)
}

/// Each byte's value in the standard base64 alphabet, or 0xff.
const BASE64_VALUE: [u8; 256] = {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 64 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Mints a new token: `sg_` followed by 44 random base62 characters from the OS RNG.
pub fn mint() -> String {
    mint_with(&mut rand::rngs::OsRng)
}

/// [`mint`] with the random bytes from `rng`.
fn mint_with(rng: &mut impl RngCore) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(3 + MINTED_CHARS);
    out.push_str("sg_");
    while out.len() < 3 + MINTED_CHARS {
        // Rejection sampling keeps every character uniform: 248 = 4 × 62.
        let [b, ..] = rng.next_u32().to_le_bytes();
        if b < 248 {
            out.push(ALPHABET[usize::from(b % 62)] as char);
        }
    }
    out
}

/// Why a supplied plaintext token breaks Scan Engine's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlaintextError {
    /// Not 4–100 characters.
    #[error("a token must be 4 to 100 ASCII characters")]
    Length,
    /// Holds a non-ASCII or control character.
    #[error("a token must be printable ASCII")]
    NotAscii,
    /// Misses one of the required character classes.
    #[error(
        "a token needs an upper-case letter, a lower-case letter, a digit and one of - . _ ~ + /"
    )]
    Classes,
}

/// Checks a user-supplied token against Scan Engine's plaintext rules: 4–100 ASCII characters with at
/// least one upper-case letter, one lower-case letter, one digit and one of `-._~+/`.
pub fn check_plaintext(token: &str) -> Result<(), PlaintextError> {
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(PlaintextError::NotAscii);
    }
    if !(4..=100).contains(&token.len()) {
        return Err(PlaintextError::Length);
    }
    let has = |f: fn(&u8) -> bool| token.as_bytes().iter().any(f);
    if has(u8::is_ascii_uppercase)
        && has(u8::is_ascii_lowercase)
        && has(u8::is_ascii_digit)
        && has(|b| b"-._~+/".contains(b))
    {
        Ok(())
    } else {
        Err(PlaintextError::Classes)
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    #[test]
    fn digest_matches_reference_hmac() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mac = ring::hmac::Key::new(ring::hmac::HMAC_SHA512, b"Jefe");
        let key = TokenKey { mac };
        let d = key.digest(b"what do ya want for nothing?");
        assert_eq!(d[..8], [0x16, 0x4b, 0x7a, 0x7b, 0xfc, 0xf8, 0x19, 0xe2]);
        assert_eq!(key.value("what do ya want for nothing?").len(), 88);
    }

    #[test]
    fn value_round_trips_and_rejects_bad_text() {
        let key = TokenKey::from_bytes(&[7; 32]);
        let v = key.value("sg_abc");
        assert_eq!(decode_value(&v), Some(key.digest(b"sg_abc")));
        assert_eq!(decode_value(&v[..87]), None);
        assert_eq!(decode_value(&"!".repeat(88)), None);
    }

    /// What the general base64 engine decodes to 64 bytes, as `decode_value` did before.
    fn by_the_engine(value: &str) -> Option<Digest> {
        let mut out = [0u8; 66];
        let n = B64.decode_slice(value, &mut out).ok()?;
        (value.len() == 88).then_some(())?;
        out[..n].try_into().ok()
    }

    /// The one-pass decoder gives the engine's answer for every ASCII character at every place of
    /// a Value, and for 100,000 values with up to three characters changed or a length off by
    /// one.
    #[test]
    fn values_decode_as_the_base64_engine_decodes_them() {
        let key = TokenKey::from_bytes(&[9; 32]);
        let value = key.value("sg_edge");
        let mut accepted = 0;
        for at in 0..value.len() {
            for b in 0u8..0x80 {
                let mut v = value.clone().into_bytes();
                v[at] = b;
                let v = String::from_utf8(v).unwrap();
                let ours = decode_value(&v);
                assert_eq!(ours, by_the_engine(&v), "{v}");
                accepted += usize::from(ours.is_some());
            }
        }
        // 85 places take 64 characters each, the 86th only the 4 with the low bits clear, the
        // last two only `=`.
        assert_eq!(accepted, 85 * 64 + 4 + 2);

        let mut rng = rand::rngs::StdRng::seed_from_u64(0x2545_f491_4f6c_dd1d);
        let mut next = |n: usize| rng.gen_range(0..n);
        let pool: Vec<char> =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \né"
                .chars()
                .collect();
        for i in 0..100_000u32 {
            let mut v: Vec<char> = key.value(&i.to_string()).chars().collect();
            for _ in 0..next(4) {
                let at = next(v.len());
                v[at] = pool[next(pool.len())];
            }
            match next(20) {
                0 => _ = v.pop(),
                1 => v.push(pool[next(pool.len())]),
                _ => {}
            }
            let v: String = v.into_iter().collect();
            assert_eq!(decode_value(&v), by_the_engine(&v), "{v}");
        }
    }

    #[test]
    fn minted_tokens_are_unique_base62() {
        let a = mint();
        let b = mint();
        assert_ne!(a, b);
        assert_eq!(a.len(), 47);
        assert!(a[3..].bytes().all(|c| c.is_ascii_alphanumeric()));
    }

    /// Hands out the given low bytes, in order, as `next_u32` results with noise above them.
    struct Scripted(std::vec::IntoIter<u8>);

    impl RngCore for Scripted {
        fn next_u32(&mut self) -> u32 {
            0xa5a5_a500 | u32::from(self.0.next().expect("script too short"))
        }
        fn next_u64(&mut self) -> u64 {
            unreachable!()
        }
        fn fill_bytes(&mut self, _: &mut [u8]) {
            unreachable!()
        }
        fn try_fill_bytes(&mut self, _: &mut [u8]) -> Result<(), rand::Error> {
            unreachable!()
        }
    }

    #[test]
    fn minting_maps_each_byte_below_248_to_one_character_and_skips_the_rest() {
        let expected = "sg_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefgh";
        // 0..44, with the two rejects 248 and 255 after the first.
        let mut script: Vec<u8> = (0..44).collect();
        script.splice(1..1, [248, 255]);
        assert_eq!(mint_with(&mut Scripted(script.into_iter())), expected);
        // The last of the four rounds, 186..248, maps the same way: 186 = 3 × 62.
        let last_round: Vec<u8> = (186..230).collect();
        assert_eq!(mint_with(&mut Scripted(last_round.into_iter())), expected);
    }

    #[test]
    fn a_missing_key_is_new_but_an_unreadable_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (key, new) = TokenKey::read_or_new(&dir.path().join("k.key")).unwrap();
        let new = new.expect("a new key for a missing file");
        assert_eq!(key.digest(b"x"), new.key().digest(b"x"));
        assert_eq!(format!("{new:?}"), "NewKey(<redacted>)");
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        // A path through a regular file: ENOTDIR, not "not found".
        let err = TokenKey::read_or_new(&file.join("k.key")).unwrap_err();
        assert!(matches!(err, KeyError::Read { .. }), "{err}");
    }

    #[test]
    fn plaintext_rules() {
        assert_eq!(check_plaintext("Ab345-KAV"), Ok(()));
        assert_eq!(check_plaintext("Ab1"), Err(PlaintextError::Length));
        assert_eq!(
            check_plaintext(&format!("Ab1-{}", "x".repeat(97))),
            Err(PlaintextError::Length)
        );
        for missing_one in ["abcd1-x", "ABCD1-X", "Abcd-x", "Abcd1x"] {
            assert_eq!(
                check_plaintext(missing_one),
                Err(PlaintextError::Classes),
                "{missing_one}"
            );
        }
        assert_eq!(check_plaintext("Ab1 -x"), Err(PlaintextError::NotAscii));
    }

    #[test]
    fn key_file_is_created_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let a = TokenKey::read_or_create(&path).unwrap();
        let b = TokenKey::read(&path).unwrap();
        assert_eq!(a.digest(b"x"), b.digest(b"x"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert!(
            NewKey::generate().write(&path, None).is_err(),
            "overwrote a key"
        );
        std::fs::write(&path, "").unwrap();
        let err = TokenKey::read(&path).unwrap_err().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        assert!(format!("{a:?}").contains("redacted"));
    }

    #[test]
    fn a_new_key_is_group_readable_only_when_the_config_is() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let me = std::fs::metadata(dir.path()).unwrap();
        let like = |mode| Access {
            uid: me.uid(),
            gid: me.gid(),
            mode,
        };
        for (i, (config, key)) in [
            (0o640, 0o640),
            (0o660, 0o640),
            (0o604, 0o600),
            (0o600, 0o600),
        ]
        .into_iter()
        .enumerate()
        {
            let path = dir.path().join(format!("{i}.key"));
            let new = NewKey::generate();
            let got = new.write(&path, Some(like(config))).unwrap();
            let on_disk = Access::of(&std::fs::metadata(&path).unwrap());
            assert_eq!((got, on_disk.mode), (like(key), key), "{config:o}");
            let read = TokenKey::read(&path).unwrap();
            assert_eq!(read.digest(b"x"), new.key().digest(b"x"));
        }
    }

    #[test]
    fn the_docker_demo_key_is_recognised() {
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/config/scangate.key");
        assert!(is_demo_key(&demo));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        assert!(!is_demo_key(&path), "missing");
        std::fs::write(&path, &std::fs::read(&demo).unwrap()[1..]).unwrap();
        assert!(!is_demo_key(&path), "malformed");
        NewKey::generate()
            .write(&dir.path().join("new.key"), None)
            .unwrap();
        assert!(!is_demo_key(&dir.path().join("new.key")));
    }
}

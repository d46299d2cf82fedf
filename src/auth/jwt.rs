//! API-connection tokens: compact JWS (RFC 7515) JWTs signed with HS256, one kind for access and one
//! for refresh.
//!
//! They are JWTs, not opaque tokens, because MDR clients read `exp` from the payload without
//! verifying it, to know when to exchange. HS256 because only scangate signs and verifies: the
//! key is derived from the key file, so replicas that share it verify each other's tokens.
//! RFC 8725 asks for explicit typing and mutually exclusive rules per kind, hence a `typ` per kind
//! (RFC 9068's `at+jwt` for access) *and* a key per kind: a refresh token never verifies as an
//! access token even if a caller skipped the `typ` check.
//!
//! `jsonwebtoken` does the JWS work. Its crypto runs on our HS256-only provider over ring
//! ([`provider`]), installed by [`JwtKeys::derive`], so no second SHA-2 stack or C build enters.

mod provider;
#[cfg(test)]
mod tests;

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::auth::token::TokenKey;

/// `typ` of an access token (RFC 9068 §2.1), which resource servers must check.
pub const ACCESS_TYP: &str = "at+jwt";
/// `typ` of a refresh token: our own, so no verifier that expects `at+jwt` or `JWT` accepts one.
pub const REFRESH_TYP: &str = "rt+jwt";

/// Longest token [`verify`] parses. Ours are about 400 bytes; the cap bounds the base64 and JSON
/// work a client can cause before the signature check. Longer than the static-token cap
/// ([`crate::auth::token::MAX_TOKEN_BYTES`]), so the hot path must apply this one to JWTs.
pub const MAX_JWT_BYTES: usize = 2048;

/// Labels under which the per-kind signing keys are derived from the key file's key. The NUL byte
/// keeps them apart from every static token's digest: no HTTP header value and no plaintext token
/// (printable ASCII) holds one, so no `Value` in a config file can ever equal a signing key.
const ACCESS_LABEL: &[u8] = b"\0scangate jwt access v1";
const REFRESH_LABEL: &[u8] = b"\0scangate jwt refresh v1";

/// Which of the two token kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Short-lived (1 h by default), sent on every request like a static token.
    Access,
    /// Long-lived and single use, exchanged at `session/confirm` for a new pair.
    Refresh,
}

impl Kind {
    /// The header `typ` that marks a token of this kind.
    pub fn typ(self) -> &'static str {
        match self {
            Kind::Access => ACCESS_TYP,
            Kind::Refresh => REFRESH_TYP,
        }
    }
}

/// Signing keys derived from the key file, one per kind, so a token of one kind never verifies as
/// the other even if typ checks were skipped.
pub struct JwtKeys {
    access: KindKey,
    refresh: KindKey,
    /// Built once: `Validation` holds a `HashSet`, too costly to build per request.
    validation: Validation,
}

/// One kind's HS256 secret in the two wrappers `jsonwebtoken` wants.
struct KindKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtKeys(<redacted>)")
    }
}

impl JwtKeys {
    /// Derives both keys as HMAC-SHA-512 of a per-kind label under the key file's key (an
    /// HKDF-expand-like PRF step), so rotating the key file rotates them, and installs the HS256
    /// provider so every later `mint`/`verify` has one.
    pub fn derive(key: &TokenKey) -> JwtKeys {
        provider::install();
        let kind_key = |label: &[u8]| {
            let secret = key.digest(label);
            KindKey {
                encoding: EncodingKey::from_secret(&secret).expect("a 64-byte secret is not empty"),
                decoding: DecodingKey::from_secret(&secret).expect("a 64-byte secret is not empty"),
            }
        };
        let mut validation = Validation::new(Algorithm::HS256);
        // `verify` compares `exp` with the caller's `now` itself: no leeway, and testable time.
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        JwtKeys {
            access: kind_key(ACCESS_LABEL),
            refresh: kind_key(REFRESH_LABEL),
            validation,
        }
    }

    fn of(&self, kind: Kind) -> &KindKey {
        match kind {
            Kind::Access => &self.access,
            Kind::Refresh => &self.refresh,
        }
    }
}

/// The claims scangate puts in both kinds (`exp`/`iat`/`sub`/`jti` are RFC 7519; `fam`/`fit` are
/// ours).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The connection's ClientId: which connection the token speaks for.
    pub sub: String,
    /// Issued at, unix seconds: compared with the connection's revocation time.
    pub iat: u64,
    /// Expiry, unix seconds: the token is valid while `exp > now`.
    pub exp: u64,
    /// 128 random bits, base64url: the single-use mark of a refresh token.
    pub jti: String,
    /// Family id: `jti` of the console-issued refresh token the family descends from, so a reuse
    /// kills the whole family.
    pub fam: String,
    /// Family issued at: unix seconds when that console-issued token was made, so `connection
    /// refresh` can kill older families without listing them.
    pub fit: u64,
}

/// Why a token was refused. Cheap: the hot path returns it for every bad token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not a token of ours by shape: not three base64url segments, bad JSON, a header other than
    /// alg HS256, a missing claim, or longer than [`MAX_JWT_BYTES`].
    #[error("malformed token")]
    Malformed,
    /// The signature does not match this kind's key.
    #[error("bad token signature")]
    BadSignature,
    /// The header's `typ` is not this kind's, e.g. a refresh token sent as an access token.
    #[error("wrong token kind")]
    WrongKind,
    /// `exp` is not after `now`.
    #[error("token expired")]
    Expired,
}

/// Signs `claims` as a token of `kind`.
pub fn mint(keys: &JwtKeys, kind: Kind, claims: &Claims) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some(kind.typ().to_owned());
    jsonwebtoken::encode(&header, claims, &keys.of(kind).encoding)
        .expect("HS256 with a 64-byte key over plain claims cannot fail")
}

/// 128 random bits from the OS RNG, base64url without padding (22 characters): unguessable ids
/// for `jti` and, through it, `fam`.
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    B64URL.encode(bytes)
}

/// Verifies a token of `kind` at `now` (unix seconds): only alg HS256, header typ exactly the
/// kind's, signature under that kind's key, `exp > now` with no leeway, all claims present; any
/// other shape fails.
///
/// The header is read before the signature is checked so that a token of the other kind is
/// reported as [`JwtError::WrongKind`], which tells an operator what the client did wrong.
pub fn verify(keys: &JwtKeys, kind: Kind, token: &str, now: u64) -> Result<Claims, JwtError> {
    if token.len() > MAX_JWT_BYTES || !looks_like_jwt(token.as_bytes()) {
        return Err(JwtError::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
    if header.alg != Algorithm::HS256 {
        return Err(JwtError::Malformed);
    }
    if header.typ.as_deref() != Some(kind.typ()) {
        return Err(JwtError::WrongKind);
    }
    let data = jsonwebtoken::decode::<Claims>(token, &keys.of(kind).decoding, &keys.validation)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => JwtError::BadSignature,
            _ => JwtError::Malformed,
        })?;
    if data.claims.exp <= now {
        return Err(JwtError::Expired);
    }
    Ok(data.claims)
}

/// A cheap shape test used on the hot path to tell a JWT from a static token before any crypto:
/// three non-empty base64url segments, the first starting with "eyJ" (base64 of `{"`). No
/// allocation.
pub fn looks_like_jwt(token: &[u8]) -> bool {
    if !token.starts_with(b"eyJ") {
        return false;
    }
    let mut dots = 0;
    let mut segment = 0;
    for &b in token {
        if b == b'.' {
            if segment == 0 {
                return false;
            }
            dots += 1;
            segment = 0;
        } else if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            segment += 1;
        } else {
            return false;
        }
    }
    dots == 2 && segment > 0
}

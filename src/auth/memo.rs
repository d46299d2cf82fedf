//! A client connection's memo of the last token it presented: a keep-alive client that sends the
//! same token on every request pays for HMAC-SHA-512 once per connection, not once per request.
//!
//! The memo holds the token's digest (what the store is keyed by anyway) under a 128-bit
//! SipHash-1-3 tag of the token, keyed by a random per-process key. The token itself is never
//! kept. A request whose token has the same tag gets the remembered digest; to get a digest it
//! never earned, a client would have to find a different token with the same secret-keyed
//! 128-bit tag. The digest is then looked up in the live store as usual, so a token disabled or
//! removed by a reload is refused on its very next request. A new generation (which may carry a
//! new key) empties the memo.
//!
//! An access token (a JWT) is remembered the same way: its verified claims under its tag, so a
//! keep-alive client pays for the signature check once per connection. The claims are judged
//! against the live connection view on every request, so a revocation or an expiry applies to
//! the next one.

use std::hash::Hasher;
use std::sync::{Arc, Mutex, OnceLock};

use siphasher::sip128::{Hasher128, SipHasher13};
use subtle::ConstantTimeEq;

use super::jwt::{self, Claims, JwtError, JwtKeys, Kind};
use super::token::{Digest, TokenKey};

/// The last token's digest on one connection, and the last access token's claims.
#[derive(Default)]
pub struct DigestMemo {
    slot: Mutex<Option<Remembered>>,
    access: Mutex<Option<Verified>>,
}

struct Verified {
    generation: u64,
    tag: [u8; 16],
    claims: Arc<Claims>,
}

struct Remembered {
    generation: u64,
    tag: [u8; 16],
    digest: Digest,
}

impl std::fmt::Debug for DigestMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigestMemo(<redacted>)")
    }
}

impl DigestMemo {
    /// The digest of `token` under `key` (the key of config generation `generation`): from the
    /// memo when this connection's last token was the same, else computed and remembered.
    pub fn digest(&self, key: &TokenKey, generation: u64, token: &[u8]) -> Digest {
        let tag = tag(token);
        if let Some(r) = self.lock().as_ref() {
            if r.generation == generation && bool::from(r.tag.ct_eq(&tag)) {
                return r.digest;
            }
        }
        // Computed without the lock: HTTP/2 streams of one connection may get here together.
        let digest = key.digest(token);
        *self.lock() = Some(Remembered {
            generation,
            tag,
            digest,
        });
        digest
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Remembered>> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The claims of access token `token`, verified under `keys` (generation `generation`) at
    /// `now`: from the memo when this connection's last access token was the same, else verified
    /// and remembered. Failures are not remembered. The caller still checks `exp` and the
    /// connection, since remembered claims were verified earlier.
    ///
    /// `None` when the token is not shaped like a JWT at all ([`jwt::looks_like_jwt`]), which is
    /// checked only when the memo misses: a remembered token passed that test when it was
    /// verified, and the scan of a 300-byte token cost more than the rest of the hit.
    pub fn access_claims(
        &self,
        keys: &JwtKeys,
        generation: u64,
        token: &[u8],
        now: u64,
    ) -> Option<Result<Arc<Claims>, JwtError>> {
        let tag = tag(token);
        if let Some(v) = lock(&self.access).as_ref() {
            if v.generation == generation && bool::from(v.tag.ct_eq(&tag)) {
                return Some(Ok(Arc::clone(&v.claims)));
            }
        }
        if !jwt::looks_like_jwt(token) {
            return None;
        }
        let verified = std::str::from_utf8(token)
            .map_err(|_| JwtError::Malformed)
            .and_then(|text| jwt::verify(keys, Kind::Access, text, now));
        let claims = match verified {
            Ok(claims) => Arc::new(claims),
            Err(e) => return Some(Err(e)),
        };
        *lock(&self.access) = Some(Verified {
            generation,
            tag,
            claims: Arc::clone(&claims),
        });
        Some(Ok(claims))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn tag(token: &[u8]) -> [u8; 16] {
    static KEY: OnceLock<(u64, u64)> = OnceLock::new();
    let &(k0, k1) = KEY.get_or_init(rand::random);
    let mut h = SipHasher13::new_with_keys(k0, k1);
    h.write(token);
    h.finish128().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_token_same_generation_is_remembered_and_anything_else_is_computed() {
        let key = TokenKey::from_bytes(&[7; 32]);
        let other_key = TokenKey::from_bytes(&[8; 32]);
        let memo = DigestMemo::default();
        assert_eq!(memo.digest(&key, 1, b"sg_one"), key.digest(b"sg_one"));
        assert_eq!(memo.digest(&key, 1, b"sg_one"), key.digest(b"sg_one"));
        // Another token on the same connection gets its own digest, never the remembered one.
        assert_eq!(memo.digest(&key, 1, b"sg_two"), key.digest(b"sg_two"));
        assert_eq!(memo.digest(&key, 1, b"sg_one"), key.digest(b"sg_one"));
        // A new generation may bring a new key: the memo is not trusted across it.
        assert_eq!(
            memo.digest(&other_key, 2, b"sg_one"),
            other_key.digest(b"sg_one")
        );
    }

    #[test]
    fn remembered_digest_is_what_the_memo_returns_for_the_same_generation() {
        // Proves the memo is used: with the same generation, the first key's digest comes back
        // even though a different key is passed (which a reload never does without a new
        // generation).
        let key = TokenKey::from_bytes(&[7; 32]);
        let other_key = TokenKey::from_bytes(&[8; 32]);
        let memo = DigestMemo::default();
        let first = memo.digest(&key, 5, b"sg_one");
        assert_eq!(memo.digest(&other_key, 5, b"sg_one"), first);
        assert_ne!(first, other_key.digest(b"sg_one"));
    }

    #[test]
    fn access_claims_are_remembered_per_token_and_a_non_jwt_is_none() {
        const NOW: u64 = 1_800_000_000;
        let keys = JwtKeys::derive(&TokenKey::from_bytes(&[7; 32]));
        let claims = |sub: &str| Claims {
            sub: sub.into(),
            iat: NOW - 10,
            exp: NOW + 3600,
            jti: jwt::new_id(),
            fam: jwt::new_id(),
            fit: NOW - 100,
        };
        let one = jwt::mint(&keys, Kind::Access, &claims("c_one"));
        let two = jwt::mint(&keys, Kind::Access, &claims("c_two"));
        let memo = DigestMemo::default();
        let sub = |r: Option<Result<Arc<Claims>, JwtError>>| r.map(|r| r.map(|c| c.sub.clone()));
        assert_eq!(
            sub(memo.access_claims(&keys, 1, one.as_bytes(), NOW)),
            Some(Ok("c_one".into()))
        );
        // Remembered: a hit needs no key that verifies it (so it cannot have been verified again).
        let other = JwtKeys::derive(&TokenKey::from_bytes(&[8; 32]));
        assert_eq!(
            sub(memo.access_claims(&other, 1, one.as_bytes(), NOW)),
            Some(Ok("c_one".into()))
        );
        // A new generation, or another token, is verified afresh.
        assert_eq!(
            sub(memo.access_claims(&other, 2, one.as_bytes(), NOW)),
            Some(Err(JwtError::BadSignature))
        );
        assert_eq!(
            sub(memo.access_claims(&keys, 2, two.as_bytes(), NOW)),
            Some(Ok("c_two".into()))
        );
        // Not shaped like a JWT: not one, whatever was remembered before.
        for not_jwt in [
            &b"eyJ.only-two"[..],
            b"eyJhbGciOi.x.y.z",
            b"sg_static",
            b"eyJ a.b.c",
        ] {
            assert_eq!(sub(memo.access_claims(&keys, 2, not_jwt, NOW)), None);
        }
        // Shaped like one but forged: a failure, not remembered.
        let mut forged = two.clone().into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        assert!(matches!(
            memo.access_claims(&keys, 2, &forged, NOW),
            Some(Err(_))
        ));
        assert_eq!(
            sub(memo.access_claims(&keys, 2, &forged, NOW)).map(|r| r.is_ok()),
            Some(false)
        );
    }
}

//! API-connection tokens: `jwt::verify` of either kind and `looks_like_jwt` over arbitrary text,
//! and the exchange body's shape.
//!
//! Invariants: no panic; nothing verifies but a token minted with the keys (a fuzzer cannot forge
//! HS256), so any `Ok` is a finding; a string that verifies must also look like a JWT; and a
//! mutation of a real token never verifies (byte 0 picks the position, byte 1 the new byte).
#![no_main]

use libfuzzer_sys::fuzz_target;
use scangate::auth::jwt::{self, Claims, JwtKeys, Kind};
use scangate::auth::token::TokenKey;

const NOW: u64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let keys = JwtKeys::derive(&TokenKey::from_bytes(&[7; 32]));
    let text = String::from_utf8_lossy(data);
    for kind in [Kind::Access, Kind::Refresh] {
        assert!(jwt::verify(&keys, kind, &text, NOW).is_err(), "forged: {text:?}");
    }
    let _ = jwt::looks_like_jwt(data);
    // The exchange body is `{"refresh_token": "…"}`: parsing never panics whatever arrives.
    let _ = serde_json::from_slice::<serde_json::Value>(data);

    let (Some(&at), Some(&byte)) = (data.first(), data.get(1)) else {
        return;
    };
    let claims = Claims {
        sub: "AbCdEfGhIjKlMnOpQrStUv".into(),
        iat: NOW,
        exp: NOW + 3600,
        jti: "q9PsuIEj1oeSegf1t7pbuA".into(),
        fam: "q9PsuIEj1oeSegf1t7pbuA".into(),
        fit: NOW,
    };
    let real = jwt::mint(&keys, Kind::Access, &claims);
    assert!(jwt::looks_like_jwt(real.as_bytes()));
    assert_eq!(jwt::verify(&keys, Kind::Access, &real, NOW), Ok(claims));
    let mut bytes = real.into_bytes();
    let i = usize::from(at) % bytes.len();
    if bytes[i] == byte {
        return;
    }
    bytes[i] = byte;
    let Ok(mutated) = String::from_utf8(bytes) else {
        return;
    };
    // base64url has a few encodings of the last segment's final bits; a change there that decodes
    // to the same signature bytes would verify, and that is not a forgery. Tell it apart by
    // comparing decoded segments.
    if let Ok(c) = jwt::verify(&keys, Kind::Access, &mutated, NOW) {
        assert_eq!(c.sub, "AbCdEfGhIjKlMnOpQrStUv", "a mutated token verified with other claims");
    }
});

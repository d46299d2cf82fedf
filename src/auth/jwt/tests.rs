//! Unit tests for [`super`]: round trips, every tampering we can think of, and the shape test.

use super::*;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};

const NOW: u64 = 1_800_000_000;

fn keys() -> JwtKeys {
    JwtKeys::derive(&TokenKey::from_bytes(&[7; 32]))
}

fn claims() -> Claims {
    Claims {
        sub: "c_3n2b7Qp0".into(),
        iat: NOW - 10,
        exp: NOW + 3600,
        jti: new_id(),
        fam: new_id(),
        fit: NOW - 100,
    }
}

/// `token`'s three segments.
fn parts(token: &str) -> [&str; 3] {
    let v: Vec<&str> = token.split('.').collect();
    [v[0], v[1], v[2]]
}

fn b64json(value: &serde_json::Value) -> String {
    B64URL.encode(serde_json::to_vec(value).unwrap())
}

/// A token with any header and payload, signed with raw HS256 under `secret`: what an attacker
/// who had the key (or a bug that leaked it) could build, to reach the checks behind the signature.
fn forge(secret: &[u8], header: serde_json::Value, payload: serde_json::Value) -> String {
    forge_raw(
        secret,
        &serde_json::to_string(&header).unwrap(),
        &serde_json::to_string(&payload).unwrap(),
    )
}

/// [`forge`] with the JSON texts given byte for byte.
fn forge_raw(secret: &[u8], header: &str, payload: &str) -> String {
    let message = format!("{}.{}", B64URL.encode(header), B64URL.encode(payload));
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap();
    mac.update(message.as_bytes());
    format!("{message}.{}", B64URL.encode(mac.finalize().into_bytes()))
}

/// The HS256 secret `keys()` derives under `label`.
fn secret(label: &[u8]) -> [u8; 64] {
    TokenKey::from_bytes(&[7; 32]).digest(label)
}

fn access_secret() -> [u8; 64] {
    secret(ACCESS_LABEL)
}

fn header(typ: &str, alg: &str) -> serde_json::Value {
    serde_json::json!({ "typ": typ, "alg": alg })
}

#[test]
fn round_trip_each_kind() {
    let keys = keys();
    let c = claims();
    for kind in [Kind::Access, Kind::Refresh] {
        let token = mint(&keys, kind, &c);
        assert!(looks_like_jwt(token.as_bytes()), "{token}");
        assert_eq!(verify(&keys, kind, &token, NOW), Ok(c.clone()));
    }
}

#[test]
fn replicas_sharing_the_key_file_verify_each_others_tokens() {
    let token = mint(&keys(), Kind::Access, &claims());
    assert!(verify(&keys(), Kind::Access, &token, NOW).is_ok());
    let other = JwtKeys::derive(&TokenKey::from_bytes(&[8; 32]));
    assert_eq!(
        verify(&other, Kind::Access, &token, NOW),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn a_token_of_one_kind_never_verifies_as_the_other() {
    let keys = keys();
    let refresh = mint(&keys, Kind::Refresh, &claims());
    let access = mint(&keys, Kind::Access, &claims());
    assert_eq!(
        verify(&keys, Kind::Access, &refresh, NOW),
        Err(JwtError::WrongKind)
    );
    assert_eq!(
        verify(&keys, Kind::Refresh, &access, NOW),
        Err(JwtError::WrongKind)
    );
}

#[test]
fn the_kinds_have_separate_keys_even_without_the_typ_check() {
    // A refresh token relabelled `at+jwt` and re-signed with the refresh key: the typ check passes,
    // the access key refuses it.
    let keys = keys();
    let mut h = Header::new(Algorithm::HS256);
    h.typ = Some(ACCESS_TYP.into());
    let token = jsonwebtoken::encode(&h, &claims(), &keys.refresh.encoding).unwrap();
    assert_eq!(
        verify(&keys, Kind::Access, &token, NOW),
        Err(JwtError::BadSignature)
    );
    assert_ne!(access_secret(), secret(REFRESH_LABEL));
}

#[test]
fn mint_signs_hs256_under_the_derived_access_key() {
    // Cross-check with the RustCrypto HMAC: the signature is HS256 under the documented derivation.
    let token = mint(&keys(), Kind::Access, &claims());
    let [h, p, s] = parts(&token);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&access_secret()).unwrap();
    mac.update(format!("{h}.{p}").as_bytes());
    assert_eq!(B64URL.decode(s).unwrap(), mac.finalize().into_bytes()[..]);
    let header: serde_json::Value = serde_json::from_slice(&B64URL.decode(h).unwrap()).unwrap();
    assert_eq!(header, serde_json::json!({"typ": "at+jwt", "alg": "HS256"}));
}

#[test]
fn tampered_signature_fails() {
    let keys = keys();
    let token = mint(&keys, Kind::Access, &claims());
    let [h, p, s] = parts(&token);
    // Flip the first character: still canonical base64url, just the wrong 32 bytes.
    let first = if s.starts_with('A') { 'B' } else { 'A' };
    let bad = format!("{h}.{p}.{first}{}", &s[1..]);
    assert_eq!(
        verify(&keys, Kind::Access, &bad, NOW),
        Err(JwtError::BadSignature)
    );
    let short = format!("{h}.{p}.{}", &s[..20]);
    assert_eq!(
        verify(&keys, Kind::Access, &short, NOW),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn tampered_payload_fails() {
    let keys = keys();
    let c = claims();
    let token = mint(&keys, Kind::Access, &c);
    let [h, _, s] = parts(&token);
    let mut other_sub = serde_json::to_value(&c).unwrap();
    other_sub["sub"] = "c_someone_else".into();
    let mut later_exp = serde_json::to_value(&c).unwrap();
    later_exp["exp"] = (c.exp + 86_400).into();
    for payload in [other_sub, later_exp] {
        let bad = format!("{h}.{}.{s}", b64json(&payload));
        assert_eq!(
            verify(&keys, Kind::Access, &bad, NOW),
            Err(JwtError::BadSignature),
            "{payload}"
        );
    }
}

#[test]
fn tampered_header_fails() {
    let keys = keys();
    let token = mint(&keys, Kind::Access, &claims());
    let [_, p, s] = parts(&token);
    let with = |h: serde_json::Value| format!("{}.{p}.{s}", b64json(&h));
    let none = with(header(ACCESS_TYP, "none"));
    assert_eq!(
        verify(&keys, Kind::Access, &none, NOW),
        Err(JwtError::Malformed)
    );
    let unsigned = format!("{}.{p}.", b64json(&header(ACCESS_TYP, "none")));
    assert_eq!(
        verify(&keys, Kind::Access, &unsigned, NOW),
        Err(JwtError::Malformed)
    );
    let hs512 = with(header(ACCESS_TYP, "HS512"));
    assert_eq!(
        verify(&keys, Kind::Access, &hs512, NOW),
        Err(JwtError::Malformed)
    );
    let swapped = with(header(REFRESH_TYP, "HS256"));
    assert_eq!(
        verify(&keys, Kind::Access, &swapped, NOW),
        Err(JwtError::WrongKind)
    );
    assert_eq!(
        verify(&keys, Kind::Refresh, &swapped, NOW),
        Err(JwtError::BadSignature)
    );
    let plain = with(header("JWT", "HS256"));
    assert_eq!(
        verify(&keys, Kind::Access, &plain, NOW),
        Err(JwtError::WrongKind)
    );
    let untyped = with(serde_json::json!({ "alg": "HS256" }));
    assert_eq!(
        verify(&keys, Kind::Access, &untyped, NOW),
        Err(JwtError::WrongKind)
    );
}

#[test]
fn another_algorithm_is_refused_even_when_correctly_signed() {
    // HS512 under the right secret: the signature is genuine, the algorithm is not ours.
    let message = format!(
        "{}.{}",
        b64json(&header(ACCESS_TYP, "HS512")),
        b64json(&serde_json::to_value(claims()).unwrap())
    );
    let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(&access_secret()).unwrap();
    mac.update(message.as_bytes());
    let token = format!("{message}.{}", B64URL.encode(mac.finalize().into_bytes()));
    assert_eq!(
        verify(&keys(), Kind::Access, &token, NOW),
        Err(JwtError::Malformed)
    );
}

#[test]
fn a_signed_token_missing_a_claim_is_malformed() {
    let keys = keys();
    let full = serde_json::to_value(claims()).unwrap();
    for claim in ["sub", "iat", "exp", "jti", "fam", "fit"] {
        let mut payload = full.clone();
        payload.as_object_mut().unwrap().remove(claim);
        let token = forge(&access_secret(), header(ACCESS_TYP, "HS256"), payload);
        assert_eq!(
            verify(&keys, Kind::Access, &token, NOW),
            Err(JwtError::Malformed),
            "{claim}"
        );
    }
    let mut text_exp = full.clone();
    text_exp["exp"] = "tomorrow".into();
    let token = forge(&access_secret(), header(ACCESS_TYP, "HS256"), text_exp);
    assert_eq!(
        verify(&keys, Kind::Access, &token, NOW),
        Err(JwtError::Malformed)
    );
    // The control: the same forging with every claim present verifies.
    let token = forge(&access_secret(), header(ACCESS_TYP, "HS256"), full);
    assert!(verify(&keys, Kind::Access, &token, NOW).is_ok());
}

#[test]
fn expiry_has_no_leeway() {
    let keys = keys();
    let c = claims();
    let token = mint(&keys, Kind::Refresh, &c);
    assert!(verify(&keys, Kind::Refresh, &token, c.exp - 1).is_ok());
    assert_eq!(
        verify(&keys, Kind::Refresh, &token, c.exp),
        Err(JwtError::Expired)
    );
    assert_eq!(
        verify(&keys, Kind::Refresh, &token, c.exp + 30),
        Err(JwtError::Expired)
    );
}

#[test]
fn exp_is_readable_without_verifying() {
    // What MDR clients do (PyJWT with verify_signature=False): base64url-decode the middle segment.
    let c = claims();
    let token = mint(&keys(), Kind::Refresh, &c);
    let payload: serde_json::Value =
        serde_json::from_slice(&B64URL.decode(parts(&token)[1]).unwrap()).unwrap();
    assert_eq!(payload["exp"], c.exp);
    assert_eq!(payload["sub"], c.sub.as_str());
}

#[test]
fn oversized_and_odd_shapes_are_malformed() {
    let keys = keys();
    let token = mint(&keys, Kind::Access, &claims());
    let padded = format!("{token}{}", "A".repeat(MAX_JWT_BYTES));
    assert_eq!(
        verify(&keys, Kind::Access, &padded, NOW),
        Err(JwtError::Malformed)
    );
    for bad in [
        "",
        "sg_abc",
        "eyJ.x",
        "eyJhbGciOiJIUzI1NiJ9.e30.!!",
        "eyJ!.e30.AA",
    ] {
        assert_eq!(
            verify(&keys, Kind::Access, bad, NOW),
            Err(JwtError::Malformed),
            "{bad}"
        );
    }
    // Right shape, header not JSON.
    assert_eq!(
        verify(&keys, Kind::Access, "eyJhbG.e30.AA", NOW),
        Err(JwtError::Malformed)
    );
}

#[test]
fn the_length_cap_is_exactly_max_jwt_bytes() {
    // Whitespace after the JSON is legal, so padding either segment reaches any exact length.
    let keys = keys();
    let header = r#"{"typ":"at+jwt","alg":"HS256"}"#;
    let payload = serde_json::to_string(&claims()).unwrap();
    let sized = |len: usize| {
        for h in 0..3 {
            for p in 0..len {
                let token = forge_raw(
                    &access_secret(),
                    &format!("{header}{}", " ".repeat(h)),
                    &format!("{payload}{}", " ".repeat(p)),
                );
                match token.len().cmp(&len) {
                    std::cmp::Ordering::Less => continue,
                    std::cmp::Ordering::Equal => return token,
                    std::cmp::Ordering::Greater => break,
                }
            }
        }
        panic!("no token of {len} bytes");
    };
    assert!(verify(&keys, Kind::Access, &sized(MAX_JWT_BYTES), NOW).is_ok());
    assert_eq!(
        verify(&keys, Kind::Access, &sized(MAX_JWT_BYTES + 1), NOW),
        Err(JwtError::Malformed)
    );
}

#[test]
fn looks_like_jwt_accepts_only_three_base64url_segments() {
    let token = mint(&keys(), Kind::Access, &claims());
    assert!(looks_like_jwt(token.as_bytes()));
    assert!(looks_like_jwt(b"eyJ.a-_.Z9"));
    for bad in [
        &b"sg_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH"[..],
        b"abc.def.ghi",
        b"eyJ",
        b"eyJ.a",
        b"eyJ..a",
        b"eyJ.a.",
        b"eyJ.a.b.c",
        b"eyJ.a+.b",
        b"eyJ.a/.b",
        b"eyJ.a=.b",
        b"eyJ.a .b",
    ] {
        assert!(!looks_like_jwt(bad), "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn new_ids_are_128_random_bits_in_base64url() {
    let a = new_id();
    assert_eq!(a.len(), 22);
    assert_eq!(B64URL.decode(&a).unwrap().len(), 16);
    assert_ne!(a, new_id());
}

#[test]
fn debug_never_shows_key_material() {
    let keys = keys();
    assert_eq!(format!("{keys:?}"), "JwtKeys(<redacted>)");
    assert_eq!(Kind::Access.typ(), "at+jwt");
    assert_eq!(Kind::Refresh.typ(), "rt+jwt");
}

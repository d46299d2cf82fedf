//! Token extraction (`auth::header::extract`) over arbitrary header maps.
//!
//! Input: byte 0 picks the field (`Authorization` or a custom `AuthRequestField`) and the scheme
//! rule; the rest is `name:value` lines. Invariants: no panic, and the outcome follows the doc:
//! `Missing` without the field, `Scheme` with two of it, and a token only from the single value
//! (after `Bearer ` when required), non-empty, at most MAX_CREDENTIAL_BYTES (an access token's cap; the static-token cap is the
//! request path's), without space or tab.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use scangate::auth::header::{extract, AuthFailure, MAX_CREDENTIAL_BYTES};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let field = if flags & 1 == 0 {
        http::header::AUTHORIZATION
    } else {
        HeaderName::from_static("x-api-token")
    };
    let bearer = flags & 2 == 0;
    let mut headers = HeaderMap::new();
    for line in rest.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(&line[colon + 1..]),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let values: Vec<&[u8]> = headers
        .get_all(&field)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    match extract(&headers, &field, bearer) {
        Err(AuthFailure::Missing) => assert!(values.is_empty()),
        Err(AuthFailure::Scheme) => assert!(!values.is_empty()),
        Err(other) => panic!("extract never returns {other:?}"),
        Ok(token) => {
            assert_eq!(values.len(), 1);
            let value = values[0];
            let expected = if bearer {
                assert!(value.len() > 7 && value[..7].eq_ignore_ascii_case(b"bearer "));
                &value[7..]
            } else {
                value
            };
            assert_eq!(token, expected);
            assert!(!token.is_empty() && token.len() <= MAX_CREDENTIAL_BYTES);
            assert!(!token.iter().any(|&b| b == b' ' || b == b'\t'));
        }
    }
    if values.len() > 1 {
        assert_eq!(extract(&headers, &field, bearer), Err(AuthFailure::Scheme));
    }
});

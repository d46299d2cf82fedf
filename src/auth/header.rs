//! Reading the token from a request: the `AuthRequestField` header, with or without `Bearer `.

use http::{HeaderMap, HeaderName};

use super::jwt::MAX_JWT_BYTES;

/// Why a request carried no usable token. Cheap to return: these are expected outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `AuthRequestField` header.
    Missing,
    /// The header appears more than once (which copy counts would be a guess), or is not
    /// `Bearer <token>` when the Bearer scheme is required, or is empty, or the credential is
    /// longer than [`MAX_CREDENTIAL_BYTES`].
    Scheme,
    /// The digest is not in the token map.
    Unknown,
    /// The token exists but `Enabled` is 0.
    Disabled,
    /// The token is valid but its role may not call this method and path (403, not 401).
    Forbidden,
    /// An access token (JWT) that is malformed, forged, of the wrong kind (a refresh token) or for
    /// a connection that does not exist (RFC 6750 `invalid_token`).
    InvalidToken,
    /// An access token past its `exp`.
    Expired,
    /// An access token of a connection that is disabled or revoked, or of a dead family.
    Revoked,
}

impl AuthFailure {
    /// Whether the credential was an access token, whose 401 says `error="invalid_token"` so an
    /// MDR-style client knows to exchange its refresh token again.
    pub fn is_access_token(self) -> bool {
        matches!(
            self,
            AuthFailure::InvalidToken | AuthFailure::Expired | AuthFailure::Revoked
        )
    }

    /// The label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Scheme => "scheme",
            AuthFailure::Unknown => "unknown",
            AuthFailure::Disabled => "disabled",
            AuthFailure::Forbidden => "forbidden",
            AuthFailure::InvalidToken => "invalid_token",
            AuthFailure::Expired => "expired",
            AuthFailure::Revoked => "revoked",
        }
    }
}

/// The longest credential read from the header: an access token (JWT). A static token is held to
/// its own, shorter cap by the caller before it is hashed.
pub const MAX_CREDENTIAL_BYTES: usize = MAX_JWT_BYTES;

/// Extracts the token bytes from `headers`.
///
/// With `bearer`, the value must be `Bearer` (any case), exactly one space, then the token (RFC 6750
/// `b64token`, but scangate only requires it to be non-empty without spaces). Header names are
/// case-insensitive by construction of [`HeaderName`]. Two copies of the header are rejected rather
/// than guessing which one counts.
pub fn extract<'a>(
    headers: &'a HeaderMap,
    field: &HeaderName,
    bearer: bool,
) -> Result<&'a [u8], AuthFailure> {
    let mut values = headers.get_all(field).iter();
    let value = values.next().ok_or(AuthFailure::Missing)?;
    if values.next().is_some() {
        return Err(AuthFailure::Scheme);
    }
    let raw = value.as_bytes();
    let token = if bearer {
        match raw.split_at_checked(7) {
            Some((scheme, rest))
                if scheme[..6].eq_ignore_ascii_case(b"bearer") && scheme[6] == b' ' =>
            {
                rest
            }
            _ => return Err(AuthFailure::Scheme),
        }
    } else {
        raw
    };
    // memchr2 looks at 32 bytes at a time: an access token is 300 bytes, and a byte loop over
    // it cost more than the rest of its authentication on a memo hit.
    if token.is_empty()
        || token.len() > MAX_CREDENTIAL_BYTES
        || memchr::memchr2(b' ', b'\t', token).is_some()
    {
        return Err(AuthFailure::Scheme);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    const AUTH: HeaderName = http::header::AUTHORIZATION;

    #[test]
    fn bearer_scheme_is_case_insensitive_with_one_space() {
        assert_eq!(
            extract(&headers(&[("authorization", "Bearer abc")]), &AUTH, true),
            Ok(&b"abc"[..])
        );
        assert_eq!(
            extract(&headers(&[("Authorization", "bEaReR abc")]), &AUTH, true),
            Ok(&b"abc"[..])
        );
        assert_eq!(
            extract(&headers(&[("Authorization", "Bearer  abc")]), &AUTH, true),
            Err(AuthFailure::Scheme)
        );
        assert_eq!(
            extract(&headers(&[("Authorization", "Basic abc")]), &AUTH, true),
            Err(AuthFailure::Scheme)
        );
        assert_eq!(
            extract(&headers(&[("Authorization", "Bearer")]), &AUTH, true),
            Err(AuthFailure::Scheme)
        );
        assert_eq!(
            extract(&headers(&[("Authorization", "Bearer ")]), &AUTH, true),
            Err(AuthFailure::Scheme)
        );
        assert_eq!(
            extract(&headers(&[("Authorization", "Bearerabc1")]), &AUTH, true),
            Err(AuthFailure::Scheme)
        );
    }

    #[test]
    fn a_blank_anywhere_in_a_token_of_any_length_is_refused() {
        // Lengths around memchr's 16- and 32-byte strides, and a 300-byte access token's.
        for len in [1, 2, 15, 16, 17, 31, 32, 33, 64, 65, 300] {
            let token = "a".repeat(len);
            let ok = format!("Bearer {token}");
            assert_eq!(
                extract(&headers(&[("Authorization", &ok)]), &AUTH, true),
                Ok(token.as_bytes()),
                "{len}"
            );
            for at in 0..len {
                for blank in [' ', '\t'] {
                    let mut bad = token.clone().into_bytes();
                    bad[at] = blank as u8;
                    let bad = format!("Bearer {}", String::from_utf8(bad).unwrap());
                    assert_eq!(
                        extract(&headers(&[("Authorization", &bad)]), &AUTH, true),
                        Err(AuthFailure::Scheme),
                        "{len} {at} {blank:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn missing_duplicate_and_oversized() {
        assert_eq!(
            extract(&headers(&[]), &AUTH, true),
            Err(AuthFailure::Missing)
        );
        assert_eq!(
            extract(
                &headers(&[("Authorization", "Bearer a"), ("Authorization", "Bearer b")]),
                &AUTH,
                true
            ),
            Err(AuthFailure::Scheme)
        );
        // The cap itself is allowed: an access token may use every byte of it.
        let longest = "a".repeat(MAX_CREDENTIAL_BYTES);
        assert_eq!(
            extract(
                &headers(&[("Authorization", &format!("Bearer {longest}"))]),
                &AUTH,
                true
            ),
            Ok(longest.as_bytes())
        );
        let long = format!("Bearer {}", "a".repeat(MAX_CREDENTIAL_BYTES + 1));
        assert_eq!(
            extract(&headers(&[("Authorization", &long)]), &AUTH, true),
            Err(AuthFailure::Scheme)
        );
    }

    #[test]
    fn custom_field_without_bearer() {
        let field = HeaderName::from_static("x-api-key");
        assert_eq!(
            extract(&headers(&[("X-API-Key", "tok")]), &field, false),
            Ok(&b"tok"[..])
        );
        // Without the Bearer scheme a "Bearer x" value is taken literally and contains a space.
        assert_eq!(
            extract(&headers(&[("x-api-key", "Bearer x")]), &field, false),
            Err(AuthFailure::Scheme)
        );
    }
}

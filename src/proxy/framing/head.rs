//! Request heads, read as hyper reads them: httparse (the version and configuration hyper uses) for
//! the syntax, then hyper 1.x's rules for how the body is framed (`proto/h1/role.rs`,
//! `Server::parse`). Only the framing rules where scangate is stricter than hyper differ: a head
//! with both Content-Length and Transfer-Encoding, or with two Content-Length lines, is refused.

use std::mem::MaybeUninit;

/// hyper's cap on header lines (`DEFAULT_MAX_HEADERS`; the server does not set `max_headers`).
/// With more, httparse fails for hyper and for the guard alike.
const MAX_HEADERS: usize = 100;

/// What httparse makes of the bytes from the start of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Head {
    /// The head ends `len` bytes in (leading blank lines included) and frames its body so.
    Complete { len: usize, framing: Framing },
    /// No blank line yet.
    Partial,
    /// httparse rejects the bytes; so does hyper, on the same bytes, with 400 or 431.
    Invalid,
}

/// How a complete head frames the body that follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body: the next head follows at once.
    Empty,
    /// A Content-Length body of this many bytes.
    Length(u64),
    /// A chunked body.
    Chunked,
    /// Content-Length with Transfer-Encoding, or two Content-Length lines. hyper would accept
    /// it (dropping Content-Length, or merging equal values); scangate never forwards it.
    Ambiguous,
    /// Framing hyper refuses after parsing: Transfer-Encoding on HTTP/1.0 or not ending in
    /// `chunked`, or a Content-Length that is not a number it takes.
    Unsupported,
}

/// Parses the head at the start of `buf`, as `Server::parse` in hyper does.
pub(super) fn parse(buf: &[u8]) -> Head {
    // Uninitialised, as in hyper: zeroing 100 headers would cost more than the parse.
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) => Head::Complete {
            len,
            framing: framing(req.version == Some(1), req.headers),
        },
        Ok(httparse::Status::Partial) => Head::Partial,
        Err(_) => Head::Invalid,
    }
}

/// hyper's body rules (RFC 9112 §6.3), in header order as hyper applies them.
fn framing(http11: bool, headers: &[httparse::Header<'_>]) -> Framing {
    // Some(whether the last Transfer-Encoding line ends in `chunked`): hyper looks at the last.
    let mut te = None;
    let mut lengths = 0usize;
    let mut length = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if !http11 {
                return Framing::Unsupported;
            }
            te = Some(ends_in_chunked(h.value));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
            length = digits(h.value);
        }
    }
    match (te, lengths, length) {
        (Some(_), 1.., _) | (None, 2.., _) => Framing::Ambiguous,
        (Some(true), 0, _) => Framing::Chunked,
        (Some(false), 0, _) => Framing::Unsupported,
        (None, 0, _) => Framing::Empty,
        (None, 1, Some(0)) => Framing::Empty,
        // hyper's largest length (`DecodedLength::MAX_LEN`).
        (None, 1, Some(n)) if n <= u64::MAX - 2 => Framing::Length(n),
        (None, 1, _) => Framing::Unsupported,
    }
}

/// hyper's `is_chunked_`: the value as visible ASCII, its last comma-separated item, trimmed, is
/// `chunked` in any case.
fn ends_in_chunked(value: &[u8]) -> bool {
    // `HeaderValue::to_str` takes tab and 0x20..0x7f only.
    if !value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        return false;
    }
    let last = value.rsplit(|&b| b == b',').next().unwrap_or(value);
    last.trim_ascii().eq_ignore_ascii_case(b"chunked")
}

/// hyper's `from_digits`: one or more ASCII digits and nothing else, without overflow.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        let d = b.is_ascii_digit().then(|| b - b'0')?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

/// Whether a head that continues in `buf`, of which the first `before` bytes were already looked
/// at, may now be complete: a blank line (`\n\n` or `\n\r\n`) ends in the new bytes. hyper runs
/// the same test (`is_complete_fast`) before it parses a head again, so a head that trickles in
/// costs linear time, not quadratic.
pub(super) fn may_be_complete(buf: &[u8], before: usize) -> bool {
    let mut at = before.saturating_sub(2);
    while let Some(k) = memchr::memchr(b'\n', &buf[at..]) {
        let nl = at + k;
        if let Some([b'\n', ..] | [b'\r', b'\n', ..]) = buf.get(nl + 1..) {
            return true;
        }
        at = nl + 1;
    }
    false
}

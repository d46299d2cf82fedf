//! The framing guard (`proxy::framing::FramingGuard`) reading pipelined requests in byte splits,
//! checked against a model of what hyper does with the same bytes.
//!
//! Input: byte 0 seeds the split sizes and byte 1 bounds them; the rest is the byte stream, where
//! `0xFF k` (k > 0) stands for k × 512 bytes of `a`, so heads past 64 KiB are cheap to reach.
//! The guard reads the stream whole, in the seeded splits and (short streams) a byte at a time.
//! Invariants, for every split:
//! - hyper is handed a prefix of the stream; all of it when nothing is refused;
//! - a head httparse completes with Content-Length and Transfer-Encoding, two Content-Lengths,
//!   or framing hyper refuses, is refused before its last byte reaches hyper;
//! - a chunked body is cut exactly at the first byte hyper's decoder fails on, or at a bare LF
//!   in its trailers; a head over 64 KiB exactly at 64 KiB;
//! - a stream of requests hyper takes whole is never refused, so the verdict does not depend on
//!   the split.
#![no_main]

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use scangate::proxy::framing::FramingGuard;
use scangate::proxy::server::MAX_HEADER_BYTES;
use tokio::io::{AsyncRead, ReadBuf};

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    let [seed, spread, rest @ ..] = data else {
        return;
    };
    let stream = expand(rest);
    let verdict = model(&stream);
    let mut runs = vec![("whole", vec![stream.len().max(1)])];
    runs.push(("seeded", splits(*seed, *spread, stream.len())));
    if stream.len() <= 4096 {
        runs.push(("bytes", vec![1; stream.len()]));
    }
    for (name, sizes) in runs {
        let out = run(&stream, sizes);
        check(&stream, &verdict, &out, name);
    }
});

/// What the guard handed hyper, and whether a read failed.
struct Outcome {
    passed: Vec<u8>,
    refused: bool,
}

fn check(stream: &[u8], verdict: &Verdict, out: &Outcome, run: &str) {
    let passed = out.passed.len();
    assert!(stream.starts_with(&out.passed), "{run}: not a prefix");
    let ctx = || format!("{run}: {verdict:?}, passed {passed} of {}", stream.len());
    match *verdict {
        Verdict::Pass => assert!(!out.refused && passed == stream.len(), "{}", ctx()),
        Verdict::BadHead { start, end } => {
            assert!(out.refused && start <= passed && passed < end, "{}", ctx())
        }
        Verdict::BadBody { at } => assert!(out.refused && passed == at, "{}", ctx()),
        Verdict::TooLarge { start } => {
            assert!(
                out.refused && passed == start + MAX_HEADER_BYTES,
                "{}",
                ctx()
            )
        }
        Verdict::Malformed { start, certain } => {
            assert!(passed >= start, "{}", ctx());
            assert!(
                out.refused || (!certain && passed == stream.len()),
                "{}",
                ctx()
            );
        }
    }
}

/// What hyper (with scangate's stricter rules) makes of the whole stream, read in one go.
#[derive(Debug)]
enum Verdict {
    /// Requests hyper takes, the last one possibly still arriving; or HTTP/2.
    Pass,
    /// A head with two framings, or framing hyper refuses, at `start..end`.
    BadHead { start: usize, end: usize },
    /// The byte at `at` is where hyper's chunked decoder fails, or a bare LF in trailers.
    BadBody { at: usize },
    /// A head from `start` longer than the limit.
    TooLarge { start: usize },
    /// httparse rejects the head at `start`; `certain` when a blank line or the limit comes
    /// after it, so the guard must have looked (hyper and the guard parse a head that trickles
    /// in only when a blank line arrives).
    Malformed { start: usize, certain: bool },
}

fn model(s: &[u8]) -> Verdict {
    let n = s.len().min(PREFACE.len());
    if s[..n] == PREFACE[..n] {
        return Verdict::Pass;
    }
    let mut pos = 0;
    while pos < s.len() {
        let rest = &s[pos..];
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let mut req = httparse::Request::new(&mut headers);
        let len = match req.parse(rest) {
            Err(_) => {
                let skip = rest
                    .iter()
                    .take_while(|&&b| b == b'\r' || b == b'\n')
                    .count();
                let certain = rest.len() >= MAX_HEADER_BYTES || has_blank_line(&rest[skip..]);
                return Verdict::Malformed {
                    start: pos,
                    certain,
                };
            }
            Ok(httparse::Status::Partial) if rest.len() >= MAX_HEADER_BYTES => {
                return Verdict::TooLarge { start: pos }
            }
            Ok(httparse::Status::Partial) => return Verdict::Pass,
            Ok(httparse::Status::Complete(len)) if len > MAX_HEADER_BYTES => {
                return Verdict::TooLarge { start: pos }
            }
            Ok(httparse::Status::Complete(len)) => len,
        };
        let end = pos + len;
        pos = match body(req.version == Some(1), req.headers) {
            None => return Verdict::BadHead { start: pos, end },
            Some(Body::Length(k)) => match usize::try_from(k).ok().and_then(|k| end.checked_add(k))
            {
                Some(next) => next,
                None => return Verdict::Pass,
            },
            Some(Body::Chunked) => match chunked(&s[end..]) {
                Chunked::Ends(used) => end + used,
                Chunked::Fails(at) => return Verdict::BadBody { at: end + at },
                Chunked::Open => return Verdict::Pass,
            },
        };
    }
    Verdict::Pass
}

fn has_blank_line(b: &[u8]) -> bool {
    b.windows(2).any(|w| w == b"\n\n") || b.windows(3).any(|w| w == b"\n\r\n")
}

enum Body {
    Length(u64),
    Chunked,
}

/// hyper's `Server::parse` framing rules; `None` for what hyper refuses and for the two-framing
/// heads scangate refuses.
fn body(http11: bool, headers: &[httparse::Header<'_>]) -> Option<Body> {
    let (mut is_te, mut is_te_chunked, mut cls) = (false, false, Vec::new());
    for h in headers {
        let name = h.name.to_ascii_lowercase();
        if name == "transfer-encoding" {
            if !http11 {
                return None;
            }
            is_te = true;
            is_te_chunked = std::str::from_utf8(h.value).ok().is_some_and(|v| {
                v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
                    && v.rsplit(',')
                        .next()
                        .is_some_and(|e| e.trim().eq_ignore_ascii_case("chunked"))
            });
        } else if name == "content-length" {
            cls.push(h.value);
        }
    }
    if is_te {
        return (cls.is_empty() && is_te_chunked).then_some(Body::Chunked);
    }
    match cls.as_slice() {
        [] => Some(Body::Length(0)),
        [v] => {
            let text = std::str::from_utf8(v).ok()?;
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let n: u64 = text.parse().ok()?;
            (n <= u64::MAX - 2).then_some(Body::Length(n))
        }
        _ => None,
    }
}

enum Chunked {
    /// The body ends after this many bytes.
    Ends(usize),
    /// hyper fails at this byte (or it is a bare LF in a trailer).
    Fails(usize),
    /// The stream ends inside the body.
    Open,
}

/// hyper 1.x's `ChunkedState` machine over `s`, written out as decode.rs has it.
fn chunked(s: &[u8]) -> Chunked {
    #[derive(Clone, Copy)]
    enum St {
        Start,
        Size,
        SizeLws,
        Extension,
        SizeLf,
        Body,
        BodyCr,
        BodyLf,
        Trailer,
        TrailerLf,
        EndCr,
        EndLf,
    }
    let mut st = St::Start;
    let mut size: u64 = 0;
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        let digit = (b as char).to_digit(16).map(u64::from);
        st = match st {
            St::Start | St::Size => match (st, b, digit) {
                (_, _, Some(d)) => match size.checked_mul(16).and_then(|v| v.checked_add(d)) {
                    Some(v) => {
                        size = v;
                        St::Size
                    }
                    None => return Chunked::Fails(i),
                },
                (St::Size, b'\t' | b' ', _) => St::SizeLws,
                (St::Size, b';', _) => St::Extension,
                (St::Size, b'\r', _) => St::SizeLf,
                _ => return Chunked::Fails(i),
            },
            St::SizeLws => match b {
                b'\t' | b' ' => St::SizeLws,
                b';' => St::Extension,
                b'\r' => St::SizeLf,
                _ => return Chunked::Fails(i),
            },
            St::Extension => match b {
                b'\r' => St::SizeLf,
                b'\n' => return Chunked::Fails(i),
                _ => St::Extension,
            },
            St::SizeLf => match (b, size) {
                (b'\n', 0) => St::EndCr,
                (b'\n', _) => St::Body,
                _ => return Chunked::Fails(i),
            },
            St::Body => {
                let take = usize::try_from(size).unwrap_or(usize::MAX).min(s.len() - i);
                size -= take as u64;
                i += take;
                if size > 0 {
                    return Chunked::Open;
                }
                st = St::BodyCr;
                continue;
            }
            St::BodyCr if b == b'\r' => St::BodyLf,
            St::BodyLf if b == b'\n' => St::Start,
            St::BodyCr | St::BodyLf => return Chunked::Fails(i),
            St::EndCr => match b {
                b'\r' => St::EndLf,
                b'\n' => return Chunked::Fails(i),
                _ => St::Trailer,
            },
            St::Trailer => match b {
                b'\r' => St::TrailerLf,
                b'\n' => return Chunked::Fails(i),
                _ => St::Trailer,
            },
            St::TrailerLf if b == b'\n' => St::EndCr,
            St::EndLf if b == b'\n' => return Chunked::Ends(i + 1),
            St::TrailerLf | St::EndLf => return Chunked::Fails(i),
        };
        i += 1;
    }
    Chunked::Open
}

/// `0xFF k` → k × 512 × `a` (k > 0), up to 256 KiB in all.
fn expand(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut it = raw.iter().copied();
    while let Some(b) = it.next() {
        match (b, it.clone().next()) {
            (0xFF, Some(k)) if k > 0 && out.len() < 256 * 1024 => {
                it.next();
                out.resize(out.len() + usize::from(k) * 512, b'a');
            }
            _ => out.push(b),
        }
    }
    out
}

/// Read sizes from a small xorshift, each 1 ..= 1 + spread² (at least len / 2048, so a long
/// stream takes a few thousand reads, not one per byte).
fn splits(seed: u8, spread: u8, len: usize) -> Vec<usize> {
    let max = (1 + usize::from(spread) * usize::from(spread)).max(len / 2048);
    let mut x = u32::from(seed) | 0x9E37_0000;
    let (mut sizes, mut sum) = (Vec::new(), 0);
    while sum < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let n = 1 + x as usize % max;
        sizes.push(n);
        sum += n;
    }
    sizes
}

/// A connection that delivers the stream in the given read sizes, then end of file.
struct Pieces<'a> {
    rest: &'a [u8],
    sizes: VecDeque<usize>,
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let want = self.sizes.pop_front().unwrap_or(usize::MAX);
        let n = want.min(self.rest.len()).min(buf.remaining());
        let (now, later) = self.rest.split_at(n);
        buf.put_slice(now);
        self.rest = later;
        Poll::Ready(Ok(()))
    }
}

fn run(stream: &[u8], sizes: Vec<usize>) -> Outcome {
    let mut guard = FramingGuard::new(Pieces {
        rest: stream,
        sizes: sizes.into(),
    });
    let mut cx = Context::from_waker(Waker::noop());
    let mut storage = vec![0u8; stream.len().max(1)];
    let mut passed = Vec::new();
    loop {
        let mut buf = ReadBuf::new(&mut storage);
        match Pin::new(&mut guard).poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                return Outcome {
                    passed,
                    refused: false,
                }
            }
            Poll::Ready(Ok(())) => passed.extend_from_slice(buf.filled()),
            Poll::Ready(Err(_)) => {
                return Outcome {
                    passed,
                    refused: true,
                }
            }
            Poll::Pending => unreachable!("in-memory reads are always ready"),
        }
    }
}

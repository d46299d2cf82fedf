//! Request-smuggling guard for HTTP/1 connections.
//!
//! hyper resolves a head that carries both `Content-Length` and `Transfer-Encoding` the way RFC 9112
//! §6.3 allows: it drops Content-Length, reads the body as chunked and closes the connection
//! afterwards. It also merges identical duplicate Content-Lengths. A gateway should be stricter,
//! as nginx is: such a request is never forwarded at all. hyper no longer shows the dropped header
//! to the handler, so this guard watches the bytes hyper reads. It follows the framing of each
//! request (head, then Content-Length bytes or chunks) so it only ever inspects heads, never bodies,
//! and when a head declares two framings it hands hyper nothing from that head on and fails the
//! read: hyper closes the connection and the request never reaches the handler.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::server::MAX_HEADER_BYTES;

/// Where in the byte stream the guard is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting a request head.
    Head,
    /// Inside a Content-Length body: this many bytes left.
    Body(u64),
    /// Chunked body: reading a chunk-size line (hex digits, then extensions up to LF).
    ChunkSize { size: u64, digits: bool, ext: bool },
    /// Chunked body: inside chunk data, this many bytes plus the CRLF after them.
    ChunkData(u64),
    /// Chunked body: trailer section; `blank` is true while the current line is still empty.
    Trailer { blank: bool },
    /// Not HTTP/1 (h2 preface) or something hyper will reject anyway: stop watching.
    Off,
    /// A smuggling attempt was seen: every further read fails.
    Refused,
}

/// Wraps a client connection's IO.
pub struct FramingGuard<S> {
    inner: S,
    state: State,
    head: Vec<u8>,
}

impl<S> FramingGuard<S> {
    /// Starts watching at the beginning of a connection.
    pub fn new(inner: S) -> FramingGuard<S> {
        FramingGuard {
            inner,
            state: State::Head,
            head: Vec::new(),
        }
    }

    /// Feeds bytes that hyper is about to receive. Returns the offset of the first byte of a refused
    /// head, if one completes in `bytes`.
    fn scan(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                State::Off => return None,
                State::Refused => return Some(i),
                State::Head => {
                    let start = i;
                    let (end, framing) = self.next_head(&bytes[i..])?;
                    i += end;
                    match framing {
                        Framing::Refuse => {
                            self.state = State::Refused;
                            // Bytes of this head seen in earlier reads are harmless: hyper waits
                            // for the end of a head, which it will never get.
                            return Some(start.min(i));
                        }
                        Framing::None => self.state = State::Head,
                        Framing::Length(0) => self.state = State::Head,
                        Framing::Length(n) => self.state = State::Body(n),
                        Framing::Chunked => {
                            self.state = State::ChunkSize {
                                size: 0,
                                digits: false,
                                ext: false,
                            }
                        }
                        Framing::Off => self.state = State::Off,
                    }
                    self.head.clear();
                }
                State::Body(left) => {
                    let take = left.min((bytes.len() - i) as u64);
                    i += take as usize;
                    self.state = if take == left {
                        State::Head
                    } else {
                        State::Body(left - take)
                    };
                }
                State::ChunkData(left) => {
                    let take = left.min((bytes.len() - i) as u64);
                    i += take as usize;
                    self.state = if take == left {
                        State::ChunkSize {
                            size: 0,
                            digits: false,
                            ext: false,
                        }
                    } else {
                        State::ChunkData(left - take)
                    };
                }
                State::ChunkSize { size, digits, ext } => {
                    let b = bytes[i];
                    i += 1;
                    self.state = match b {
                        b'\n' if digits && size == 0 => State::Trailer { blank: true },
                        // + 2 for the CRLF that ends the chunk data.
                        b'\n' if digits => State::ChunkData(size.saturating_add(2)),
                        // The CRLF after chunk data lands here: skip it.
                        b'\r' | b'\n' if !digits => State::ChunkSize { size, digits, ext },
                        _ if ext => State::ChunkSize { size, digits, ext },
                        b';' | b' ' | b'\t' | b'\r' => State::ChunkSize {
                            size,
                            digits,
                            ext: true,
                        },
                        _ => match (b as char).to_digit(16) {
                            Some(d) if size >> 60 == 0 => State::ChunkSize {
                                size: size * 16 + u64::from(d),
                                digits: true,
                                ext,
                            },
                            // hyper rejects this chunk size; nothing further to watch.
                            _ => State::Off,
                        },
                    };
                }
                State::Trailer { blank } => {
                    let b = bytes[i];
                    i += 1;
                    self.state = match b {
                        b'\n' if blank => State::Head,
                        b'\n' => State::Trailer { blank: true },
                        b'\r' => State::Trailer { blank },
                        _ => State::Trailer { blank: false },
                    };
                }
            }
        }
        None
    }

    /// Reads a request head from `bytes`. When the head completes in them, returns how many of
    /// `bytes` it took and its framing. A head that arrives whole in one read (the usual case) is
    /// read in place; only one split over reads is copied.
    fn next_head(&mut self, bytes: &[u8]) -> Option<(usize, Framing)> {
        if self.head.is_empty() {
            // Leading blank lines before a request line are allowed (RFC 9112 §2.2).
            let skip = bytes
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            let rest = &bytes[skip..];
            if let Some(end) = head_end(rest, 0) {
                return Some((skip + end, head_framing(&rest[..end])));
            }
            return self.keep_partial(rest);
        }
        let before = self.head.len();
        let room = (MAX_HEADER_BYTES + 4).saturating_sub(before);
        self.head.extend_from_slice(&bytes[..bytes.len().min(room)]);
        // The blank line may straddle the two reads: look from just before the new bytes.
        match head_end(&self.head, before.saturating_sub(3)) {
            Some(end) => {
                let framing = head_framing(&self.head[..end]);
                self.head.clear();
                Some((end - before, framing))
            }
            None => {
                self.check_size();
                None
            }
        }
    }

    /// Keeps the start of a head that continues in the next read.
    fn keep_partial(&mut self, rest: &[u8]) -> Option<(usize, Framing)> {
        let room = MAX_HEADER_BYTES + 4;
        self.head.extend_from_slice(&rest[..rest.len().min(room)]);
        self.check_size();
        None
    }

    fn check_size(&mut self) {
        if self.head.len() > MAX_HEADER_BYTES {
            // hyper answers 431 for this; it will not be forwarded.
            self.state = State::Off;
            self.head = Vec::new();
        }
    }
}

/// The end of the head in `buf` (just past its blank line), searching from `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(k) = memchr::memchr(b'\n', &buf[at..]) {
        let nl = at + k;
        match buf.get(nl + 1..) {
            Some([b'\n', ..]) => return Some(nl + 2),
            Some([b'\r', b'\n', ..]) => return Some(nl + 3),
            _ => at = nl + 1,
        }
    }
    None
}

enum Framing {
    None,
    Length(u64),
    Chunked,
    Refuse,
    Off,
}

fn head_framing(head: &[u8]) -> Framing {
    if head.starts_with(b"PRI * HTTP/2.0") {
        return Framing::Off;
    }
    let mut lengths = 0;
    let mut length = None;
    let mut te = false;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = &line[..colon];
        if name.eq_ignore_ascii_case(b"content-length") {
            let value = std::str::from_utf8(&line[colon + 1..]).unwrap_or("").trim();
            lengths += 1;
            length = value.parse::<u64>().ok();
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te = true;
        }
    }
    match (lengths, te, length) {
        (0, false, _) => Framing::None,
        (1, false, Some(n)) => Framing::Length(n),
        (1, false, None) => Framing::Off,
        (0, true, _) => Framing::Chunked,
        _ => Framing::Refuse,
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FramingGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.state == State::Refused {
            return Poll::Ready(Err(refused()));
        }
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if this.state == State::Off {
            return Poll::Ready(Ok(()));
        }
        let filled = buf.filled().len();
        let verdict = this.scan(&buf.filled()[before..filled]);
        match verdict {
            None => Poll::Ready(Ok(())),
            Some(0) => {
                buf.set_filled(before);
                tracing::warn!("request with ambiguous framing (Content-Length with Transfer-Encoding, or two Content-Lengths) refused");
                Poll::Ready(Err(refused()))
            }
            Some(cut) => {
                buf.set_filled(before + cut);
                tracing::warn!(
                    "request with ambiguous framing refused after earlier pipelined requests"
                );
                Poll::Ready(Ok(()))
            }
        }
    }
}

fn refused() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "ambiguous request framing")
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FramingGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> FramingGuard<tokio::io::Empty> {
        FramingGuard::new(tokio::io::empty())
    }

    /// Feeds `stream` in pieces of `step` bytes; returns the absolute offset of a refusal.
    fn refuse_at(stream: &[u8], step: usize) -> Option<usize> {
        let mut g = guard();
        let mut offset = 0;
        for piece in stream.chunks(step) {
            if let Some(cut) = g.scan(piece) {
                return Some(offset + cut);
            }
            offset += piece.len();
        }
        None
    }

    #[test]
    fn plain_pipelined_requests_pass_in_any_split() {
        let stream = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\
POST /x HTTP/1.1\r\nContent-Length: 40\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: x\r\n\r\n\
POST /y HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1b\r\nContent-Length: 5\r\n\r\n12345\r\n0\r\nX-T: 1\r\n\r\n\
GET /z HTTP/1.1\r\n\r\n";
        for step in [1, 2, 3, 7, 64, stream.len()] {
            assert_eq!(refuse_at(stream, step), None, "step {step}");
        }
    }

    #[test]
    fn cl_te_te_cl_and_double_cl_are_refused_at_their_head() {
        let first = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        for bad in [
            &b"POST / HTTP/1.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"[..],
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        ] {
            let stream = [&first[..], bad].concat();
            assert_eq!(refuse_at(&stream, stream.len()), Some(first.len()));
            // Split reads, including splits inside the blank line: the refusal comes no later than
            // the read that completes the bad head.
            for step in 1..=stream.len() {
                let at = refuse_at(&stream, step).unwrap_or_else(|| panic!("step {step}"));
                assert!(at >= first.len() && at <= first.len() + bad.len(), "step {step}");
            }
        }
    }

    #[test]
    fn a_head_over_the_limit_turns_the_guard_off_for_hyper_to_refuse() {
        for step in [100, MAX_HEADER_BYTES + 10] {
            let mut g = guard();
            let mut stream = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
            stream.resize(MAX_HEADER_BYTES + 10, b'a');
            for piece in stream.chunks(step) {
                assert_eq!(g.scan(piece), None);
            }
            assert_eq!(g.state, State::Off, "step {step}");
        }
    }

    #[test]
    fn h2_preface_turns_the_guard_off() {
        let mut g = guard();
        assert_eq!(g.scan(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n\r\n"), None);
        assert_eq!(g.state, State::Off);
    }
}

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
                    let end = self.push_head(&bytes[i..])?;
                    i += end;
                    match head_framing(&self.head) {
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

    /// Appends to the head; returns how many bytes of `bytes` completed it, if it is now complete.
    fn push_head(&mut self, bytes: &[u8]) -> Option<usize> {
        for (k, &b) in bytes.iter().enumerate() {
            // Leading blank lines before a request line are allowed (RFC 9112 §2.2).
            if self.head.is_empty() && (b == b'\r' || b == b'\n') {
                continue;
            }
            self.head.push(b);
            if b == b'\n' && (self.head.ends_with(b"\n\r\n") || self.head.ends_with(b"\n\n")) {
                return Some(k + 1);
            }
            if self.head.len() > MAX_HEADER_BYTES {
                // hyper answers 431 for this; it will not be forwarded.
                self.state = State::Off;
                return None;
            }
        }
        None
    }
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
        let value = std::str::from_utf8(&line[colon + 1..]).unwrap_or("").trim();
        if name.eq_ignore_ascii_case(b"content-length") {
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
            // Split reads: the refusal comes no later than the read that completes the bad head.
            let at = refuse_at(&stream, 5).unwrap();
            assert!(at >= first.len() && at <= first.len() + bad.len());
        }
    }

    #[test]
    fn h2_preface_turns_the_guard_off() {
        let mut g = guard();
        assert_eq!(g.scan(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n\r\n"), None);
        assert_eq!(g.state, State::Off);
    }
}

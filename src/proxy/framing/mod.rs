//! Request-smuggling guard for HTTP/1 connections.
//!
//! hyper resolves a head that carries both `Content-Length` and `Transfer-Encoding` the way RFC 9112
//! §6.3 allows: it drops Content-Length, reads the body as chunked and closes the connection
//! afterwards. It also merges identical duplicate Content-Lengths. A gateway should be stricter,
//! as nginx is: such a request is never forwarded at all. hyper no longer shows the dropped header
//! to the handler, so this guard watches the bytes hyper reads. It follows the framing of each
//! request as hyper does: heads through httparse, the parser hyper uses ([`head`]), and bodies
//! through hyper's chunked decoder's states ([`chunked`]). When a head declares two framings it
//! hands hyper nothing from that head on and fails the read: hyper closes the connection and the
//! request never reaches the handler.
//!
//! The guard fails closed. Whatever it does not follow exactly as hyper does (a chunk syntax error,
//! a bare LF in a trailer, a head over [`MAX_HEADER_BYTES`]) refuses the connection from that byte
//! on: every later read fails. Only the HTTP/2 preface at the start of a connection turns it off.

mod chunked;
mod head;
#[cfg(test)]
mod tests;

use std::io;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use self::chunked::{Chunked, Fed};
use self::head::{Framing, Head};
use super::server::MAX_HEADER_BYTES;

/// The HTTP/2 connection preface, as hyper-util's version sniff compares it.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Where in the byte stream the guard is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The connection's first bytes, this many of them, all match the HTTP/2 preface.
    Preface(usize),
    /// Collecting a request head.
    Head,
    /// Inside a Content-Length body: this many bytes left.
    Body(u64),
    /// Inside a chunked body.
    Chunked(Chunked),
    /// An HTTP/2 connection: nothing to watch.
    Off,
    /// Refused: every further read fails.
    Refused,
}

/// Why the guard refused a connection; decides how loudly it says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Two framings in one head: a smuggling attempt.
    Ambiguous,
    /// Framing hyper would refuse too.
    Unsupported,
    /// A head over [`MAX_HEADER_BYTES`]: hyper gets exactly that many bytes and answers 431.
    TooLarge,
    /// httparse rejects the head: hyper gets it and answers 400 (or 431 for too many lines).
    Malformed,
    /// A chunked body that hyper would fail on, or a bare LF in its trailers.
    Chunked,
}

/// Where a refused read is cut, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cut {
    /// hyper gets the bytes of this read before this offset; later reads fail.
    at: usize,
    why: Refusal,
}

/// Wraps a client connection's IO. It must see the connection from its first byte.
pub struct FramingGuard<S> {
    inner: S,
    state: State,
    /// The start of a head that continues in the next read (empty when none does). Heads that
    /// arrive whole, the usual case, are parsed in place and never copied here.
    head: Vec<u8>,
}

impl<S> FramingGuard<S> {
    /// Starts watching at the beginning of a connection.
    pub fn new(inner: S) -> FramingGuard<S> {
        FramingGuard {
            inner,
            state: State::Preface(0),
            head: Vec::new(),
        }
    }

    /// Feeds bytes that hyper is about to receive. Returns where to cut them if the connection is
    /// refused in them.
    fn scan(&mut self, bytes: &[u8]) -> Option<Cut> {
        let mut i = 0;
        while i < bytes.len() {
            let step = match self.state {
                State::Off => return None,
                State::Refused => {
                    return Some(Cut {
                        at: i,
                        why: Refusal::Malformed,
                    })
                }
                State::Preface(matched) => self.preface(bytes, matched),
                State::Head => self.head(bytes, i, true),
                State::Body(left) => {
                    let take = left.min((bytes.len() - i) as u64);
                    self.state = if take == left {
                        State::Head
                    } else {
                        State::Body(left - take)
                    };
                    ControlFlow::Continue(i + take as usize)
                }
                State::Chunked(at) => match at.feed(&bytes[i..]) {
                    Fed::More(next) => {
                        self.state = State::Chunked(next);
                        ControlFlow::Continue(bytes.len())
                    }
                    Fed::Done(used) => {
                        self.state = State::Head;
                        ControlFlow::Continue(i + used)
                    }
                    Fed::Refused(bad) => ControlFlow::Break(self.refuse(i + bad, Refusal::Chunked)),
                },
            };
            match step {
                ControlFlow::Continue(next) => i = next,
                ControlFlow::Break(cut) => return cut,
            }
        }
        None
    }

    /// hyper-util serves HTTP/2 when the first 24 bytes are its preface, HTTP/1 from the first
    /// byte that differs. Only called at the start of a connection, so `bytes` start at offset 0.
    fn preface(&mut self, bytes: &[u8], matched: usize) -> ControlFlow<Option<Cut>, usize> {
        let want = &H2_PREFACE[matched..];
        let same = bytes.iter().zip(want).take_while(|(a, b)| a == b).count();
        if same == want.len() {
            self.state = State::Off;
            self.head = Vec::new();
            return ControlFlow::Break(None);
        }
        if same == bytes.len() {
            self.state = State::Preface(matched + same);
            self.head.extend_from_slice(bytes);
            return ControlFlow::Break(None);
        }
        // HTTP/1: the bytes so far start its first head. Any kept here were never parsed, so
        // look for the blank line from their start.
        self.state = State::Head;
        self.head(bytes, 0, false)
    }

    /// Reads a request head from `bytes[start..]`. Continues with the offset just past it, or
    /// stops the scan of this read (the head goes on in the next one, or the read is cut).
    fn head(
        &mut self,
        bytes: &[u8],
        start: usize,
        parsed_before: bool,
    ) -> ControlFlow<Option<Cut>, usize> {
        let rest = &bytes[start..];
        if self.head.is_empty() {
            // In place: a head that arrives whole is parsed where it lies.
            let window = &rest[..rest.len().min(MAX_HEADER_BYTES)];
            return match head::parse(window) {
                Head::Complete { len, framing } => self.body(framing, start, start + len),
                Head::Partial if window.len() == MAX_HEADER_BYTES => {
                    ControlFlow::Break(self.refuse(start + MAX_HEADER_BYTES, Refusal::TooLarge))
                }
                Head::Partial => {
                    self.head.extend_from_slice(rest);
                    ControlFlow::Break(None)
                }
                Head::Invalid => ControlFlow::Break(self.refuse(bytes.len(), Refusal::Malformed)),
            };
        }
        let before = self.head.len();
        let take = rest.len().min(MAX_HEADER_BYTES - before);
        self.head.extend_from_slice(&rest[..take]);
        let from = if parsed_before { before } else { 0 };
        let parsed = if head::may_be_complete(&self.head, from) {
            head::parse(&self.head)
        } else {
            Head::Partial
        };
        match parsed {
            Head::Complete { len, framing } => {
                self.head.clear();
                // The head ends in the new bytes (`len > before`): the kept ones were either
                // parsed as Partial or held no blank line. Bytes of this head passed in earlier
                // reads are harmless when it is refused: hyper waits for the end of a head,
                // which it will never get.
                self.body(framing, start, start + (len - before))
            }
            Head::Partial if self.head.len() == MAX_HEADER_BYTES => {
                ControlFlow::Break(self.refuse(start + take, Refusal::TooLarge))
            }
            Head::Partial => ControlFlow::Break(None),
            Head::Invalid => ControlFlow::Break(self.refuse(bytes.len(), Refusal::Malformed)),
        }
    }

    /// Moves past a complete head that started at `start` (or in an earlier read) and ends at
    /// `end`, into its body; or refuses it, cutting the read where it starts.
    fn body(
        &mut self,
        framing: Framing,
        start: usize,
        end: usize,
    ) -> ControlFlow<Option<Cut>, usize> {
        self.state = match framing {
            Framing::Empty => State::Head,
            Framing::Length(n) => State::Body(n),
            Framing::Chunked => State::Chunked(Chunked::Start),
            Framing::Ambiguous => {
                return ControlFlow::Break(self.refuse(start, Refusal::Ambiguous))
            }
            Framing::Unsupported => {
                return ControlFlow::Break(self.refuse(start, Refusal::Unsupported))
            }
        };
        ControlFlow::Continue(end)
    }

    fn refuse(&mut self, at: usize, why: Refusal) -> Option<Cut> {
        self.state = State::Refused;
        self.head = Vec::new();
        Some(Cut { at, why })
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
        let Some(cut) = this.scan(&buf.filled()[before..filled]) else {
            return Poll::Ready(Ok(()));
        };
        match cut.why {
            Refusal::Ambiguous => tracing::warn!("request with ambiguous framing (Content-Length with Transfer-Encoding, or two Content-Lengths) refused"),
            Refusal::Unsupported => tracing::warn!("request with unsupported framing (Transfer-Encoding not ending in chunked, or on HTTP/1.0, or a bad Content-Length) refused"),
            Refusal::Chunked => tracing::warn!("malformed chunked request body refused"),
            // hyper answers these itself.
            Refusal::TooLarge | Refusal::Malformed => {
                tracing::debug!(why = ?cut.why, "request head refused")
            }
        }
        buf.set_filled(before + cut.at);
        if cut.at == 0 {
            Poll::Ready(Err(refused()))
        } else {
            Poll::Ready(Ok(()))
        }
    }
}

fn refused() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "request framing refused")
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

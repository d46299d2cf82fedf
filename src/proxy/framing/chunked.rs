//! A chunked request body, followed byte for byte as hyper 1.x's decoder follows it
//! (`proto/h1/decode.rs`, `ChunkedState`), so the guard and hyper agree on where the body ends.
//! Where hyper would fail, the guard refuses. It also refuses the one thing hyper accepts but
//! does not read as lines: a bare LF in the trailer section. hyper ends a trailer line only at
//! CRLF, then hands the section to httparse, which also ends lines at a bare LF and stops at the
//! first empty one, so the trailers it reports are not the bytes it consumed.
//!
//! hyper's caps (16 KiB of extensions or of trailers, 100 trailer lines) are not repeated here:
//! past them hyper fails the body and closes the connection itself, so it reads nothing after.

/// Where in a chunked body the guard is. The states are hyper's; the chunk size rides along.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunked {
    /// Before the first hex digit of a chunk size.
    Start,
    /// Reading hex digits: the size so far.
    Size(u64),
    /// Spaces or tabs after the size.
    SizeLws(u64),
    /// A chunk extension, up to CR.
    Extension(u64),
    /// CR seen after the size line: LF must follow.
    SizeLf(u64),
    /// Inside chunk data: this many bytes left.
    Data(u64),
    /// After chunk data: CR must follow.
    DataCr,
    /// After chunk data and CR: LF must follow.
    DataLf,
    /// After the last chunk or a trailer line: CR (end of body) or a trailer line.
    EndCr,
    /// Inside a trailer line, up to CR.
    Trailer,
    /// CR seen in a trailer line: LF must follow.
    TrailerLf,
    /// The final CR seen: LF ends the body.
    EndLf,
}

/// What [`Chunked::feed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fed {
    /// All bytes belonged to the body, which goes on in the next read.
    More(Chunked),
    /// The body ended after this many bytes.
    Done(usize),
    /// The byte at this offset is not what hyper accepts there (or is a bare LF in a trailer).
    Refused(usize),
}

impl Chunked {
    /// Follows the body through `bytes`.
    pub(super) fn feed(self, bytes: &[u8]) -> Fed {
        let mut state = self;
        let mut i = 0;
        while i < bytes.len() {
            if let Chunked::Data(left) = state {
                let take = left.min((bytes.len() - i) as u64);
                i += take as usize;
                state = if take == left {
                    Chunked::DataCr
                } else {
                    Chunked::Data(left - take)
                };
                continue;
            }
            state = match state.next(bytes[i]) {
                Some(Step::To(next)) => next,
                Some(Step::End) => return Fed::Done(i + 1),
                None => return Fed::Refused(i),
            };
            i += 1;
        }
        Fed::More(state)
    }

    /// One byte outside chunk data; `None` where hyper fails or where the guard refuses.
    fn next(self, b: u8) -> Option<Step> {
        use Chunked::*;
        let to = match (self, b) {
            (Start, _) => Size(hex(b)?),
            (Size(n), b'\t' | b' ') => SizeLws(n),
            (Size(n), b';') => Extension(n),
            (Size(n), b'\r') => SizeLf(n),
            // hyper fails on a size that overflows u64.
            (Size(n), _) => Size(n.checked_mul(16)?.checked_add(hex(b)?)?),
            (SizeLws(n), b'\t' | b' ') => SizeLws(n),
            (SizeLws(n), b';') => Extension(n),
            (SizeLws(n), b'\r') => SizeLf(n),
            (Extension(n), b'\r') => SizeLf(n),
            (Extension(n), b) if b != b'\n' => Extension(n),
            (SizeLf(0), b'\n') => EndCr,
            (SizeLf(n), b'\n') => Data(n),
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Start,
            (EndCr, b'\r') => EndLf,
            // A trailer line, whose first byte hyper takes whatever it is; LF is refused.
            (EndCr | Trailer, b) if b != b'\r' && b != b'\n' => Trailer,
            (Trailer, b'\r') => TrailerLf,
            (TrailerLf, b'\n') => EndCr,
            (EndLf, b'\n') => return Some(Step::End),
            _ => return None,
        };
        Some(Step::To(to))
    }
}

/// One byte's move.
enum Step {
    To(Chunked),
    End,
}

/// A hex digit as hyper takes it: `0-9`, `a-f`, `A-F`.
fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

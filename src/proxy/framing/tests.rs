use super::*;

fn guard() -> FramingGuard<tokio::io::Empty> {
    FramingGuard::new(tokio::io::empty())
}

/// Feeds `stream` in pieces of `step` bytes; returns the absolute offset of a refusal and why.
fn cut_at(stream: &[u8], step: usize) -> Option<(usize, Refusal)> {
    let mut g = guard();
    let mut offset = 0;
    for piece in stream.chunks(step) {
        if let Some(cut) = g.scan(piece) {
            return Some((offset + cut.at, cut.why));
        }
        offset += piece.len();
    }
    None
}

fn refuse_at(stream: &[u8], step: usize) -> Option<usize> {
    cut_at(stream, step).map(|(at, _)| at)
}

/// Every split size, 1 to the whole stream.
fn every_step(stream: &[u8]) -> std::ops::RangeInclusive<usize> {
    1..=stream.len()
}

const FIRST: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

#[test]
fn plain_pipelined_requests_pass_in_any_split() {
    let stream = b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n\
POST /x HTTP/1.1\r\nContent-Length: 40\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: x\r\n\r\n\
POST /y HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1A \t;a\r\nContent-Length: 5\r\n\r\n12345\r\n3 \r\nabc\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n\
\r\n\nPOST /z HTTP/1.1\r\ntransfer-encoding: gzip\r\nTransfer-Encoding: GZIP ,\tChunked \r\n\r\n0\r\n\r\n\
POST /e HTTP/1.1\r\nContent-Length: 0\r\n\r\nGET /old HTTP/1.0\nContent-Length: 2\n\nokGET /z HTTP/1.1\r\n\r\n";
    for step in every_step(stream) {
        assert_eq!(cut_at(stream, step), None, "step {step}");
    }
}

#[test]
fn cl_te_te_cl_and_double_cl_are_refused_at_their_head() {
    for bad in [
        &b"POST / HTTP/1.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"[..],
        b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: x\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello",
    ] {
        let stream = [FIRST, bad].concat();
        assert_eq!(
            cut_at(&stream, stream.len()),
            Some((FIRST.len(), Refusal::Ambiguous))
        );
        // Split reads, including splits inside the blank line: the refusal comes no later than
        // the read that completes the bad head, and never passes its last byte.
        let head_end = FIRST.len() + bad.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        for step in every_step(&stream) {
            let (at, why) = cut_at(&stream, step).unwrap_or_else(|| panic!("step {step}"));
            assert!(at >= FIRST.len() && at < head_end, "step {step}: {at}");
            assert_eq!(why, Refusal::Ambiguous);
        }
    }
}

#[test]
fn framing_hyper_refuses_is_refused_at_its_head() {
    for bad in [
        &b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\xff\r\n\r\n",
        // hyper reads the value as visible ASCII first: obs-text anywhere means not chunked.
        b"POST / HTTP/1.1\r\nTransfer-Encoding: \xff, chunked\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551614\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
    ] {
        let stream = [FIRST, bad, FIRST].concat();
        for step in every_step(&stream) {
            let (at, why) = cut_at(&stream, step).unwrap_or_else(|| panic!("step {step}"));
            assert!(
                at >= FIRST.len() && at < FIRST.len() + bad.len(),
                "step {step}: {at}"
            );
            assert_eq!(
                why,
                Refusal::Unsupported,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
    // The largest length hyper takes is a length.
    let mut g = guard();
    let max = b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551613\r\n\r\n";
    assert_eq!(g.scan(max), None);
    assert_eq!(g.state, State::Body(u64::MAX - 2));
}

/// Review F5(a): hyper ends a trailer line only at CRLF, then httparse reads `A: b\n\r\n` as one
/// trailer and an empty line. The old guard ended the body at that empty line and read the rest
/// (hyper's trailers) as a head with Content-Length: 120, which swallowed the CL+TE head after it.
#[test]
fn f5a_bare_lf_in_a_trailer_is_refused_where_it_stands() {
    let auth = "Host: x\r\nAuthorization: Bearer T\r\n";
    let stream = format!(
        "POST /api/v3.0/scanmemory HTTP/1.1\r\n{auth}Transfer-Encoding: chunked\r\n\r\n\
0\r\nA: b\n\r\nZ: z\r\nContent-Length: 120\r\n\r\n\
POST /api/v3.0/scanmemory HTTP/1.1\r\n{auth}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    );
    let stream = stream.as_bytes();
    let lf = stream.windows(5).position(|w| w == b"A: b\n").unwrap() + 4;
    for step in every_step(stream) {
        assert_eq!(
            cut_at(stream, step),
            Some((lf, Refusal::Chunked)),
            "step {step}"
        );
    }
}

/// Review F5(b): a head split over reads that passed 64 KiB switched the old guard off, so a CL+TE
/// head after it went through. hyper may parse a head a little over its buffer limit (its reads
/// can overshoot it); the guard passes exactly the limit, which hyper answers with 431.
#[test]
fn f5b_a_split_head_over_the_limit_is_refused_at_the_limit() {
    let stream = f5b_stream();
    let steps = [
        1,
        2,
        3,
        7,
        24,
        100,
        4096,
        8192,
        16_384,
        MAX_HEADER_BYTES - 1,
    ];
    for step in steps
        .into_iter()
        .chain([MAX_HEADER_BYTES, MAX_HEADER_BYTES + 1, stream.len()])
    {
        assert_eq!(
            cut_at(&stream, step),
            Some((MAX_HEADER_BYTES, Refusal::TooLarge)),
            "step {step}"
        );
    }
}

/// A 64 KiB + 1 head, then a CL+TE head.
fn f5b_stream() -> Vec<u8> {
    let mut stream = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    stream.resize(MAX_HEADER_BYTES - 3, b'a');
    stream.extend_from_slice(b"\r\n\r\n");
    assert_eq!(stream.len(), MAX_HEADER_BYTES + 1);
    stream.extend_from_slice(
        b"POST / HTTP/1.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
    );
    stream
}

#[test]
fn a_head_of_exactly_the_limit_passes() {
    let mut stream = b"\r\nGET / HTTP/1.1\r\nX-Big: ".to_vec();
    stream.resize(MAX_HEADER_BYTES - 4, b'a');
    stream.extend_from_slice(b"\r\n\r\n");
    assert_eq!(stream.len(), MAX_HEADER_BYTES);
    stream.extend_from_slice(FIRST);
    for step in [
        1,
        3,
        100,
        MAX_HEADER_BYTES - 1,
        MAX_HEADER_BYTES,
        stream.len(),
    ] {
        assert_eq!(cut_at(&stream, step), None, "step {step}");
    }
}

#[test]
fn chunked_syntax_hyper_fails_on_is_refused_at_the_byte() {
    let head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (body, bad) in [
        // A bare LF after the chunk size.
        (&b"5\nhello\r\n0\r\n\r\n"[..], 1),
        // Two bytes other than CRLF after chunk data.
        (b"5\r\nhelloXY0\r\n\r\n", 8),
        (b"5\r\nhello\rX0\r\n\r\n", 9),
        // Extra CR/LF before a chunk size.
        (b"5\r\nhello\r\n\r\n0\r\n\r\n", 10),
        (b"\n0\r\n\r\n", 0),
        // Not a hex digit; a space inside the size; LF in an extension; too big for u64.
        (b"g\r\n", 0),
        (b"1 1\r\n", 2),
        (b"1;a\nb\r\n", 3),
        (b"10000000000000000\r\n", 16),
        (b"5\r\r\n", 2),
        // A bare LF where the body ends, or inside a trailer; CR without LF in a trailer.
        (b"0\r\n\n", 3),
        (b"0\r\nA: b\n\r\n", 7),
        (b"0\r\nA: b\rX\r\n\r\n", 8),
        (b"0\r\n\rX", 4),
    ] {
        let stream = [head, body].concat();
        for step in every_step(&stream) {
            assert_eq!(
                cut_at(&stream, step),
                Some((head.len() + bad, Refusal::Chunked)),
                "{:?} step {step}",
                String::from_utf8_lossy(body)
            );
        }
    }
    // The largest size that fits in u64 is a size.
    let mut g = guard();
    assert_eq!(g.scan(head), None);
    assert_eq!(g.scan(b"fffffffffffffffF\r\n"), None);
    assert_eq!(g.state, State::Chunked(Chunked::Data(u64::MAX)));
}

#[test]
fn a_malformed_head_goes_to_hyper_for_its_400_then_reads_fail() {
    for bad in [
        &b"GET /a b HTTP/1.1\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"\rGET / HTTP/1.1\r\n\r\n",
    ] {
        let stream = [FIRST, bad, FIRST].concat();
        let mut g = guard();
        assert_eq!(
            g.scan(&stream),
            Some(Cut {
                at: stream.len(),
                why: Refusal::Malformed
            })
        );
        assert_eq!(
            g.scan(FIRST),
            Some(Cut {
                at: 0,
                why: Refusal::Malformed
            })
        );
        for step in every_step(&stream) {
            let (at, why) = cut_at(&stream, step).unwrap_or_else(|| panic!("step {step}"));
            assert!(at > FIRST.len(), "step {step}");
            assert_eq!(why, Refusal::Malformed);
        }
    }
}

#[test]
fn h2_preface_turns_the_guard_off_only_at_the_start() {
    let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n\r\n";
    for step in every_step(h2) {
        let mut g = guard();
        for piece in h2.chunks(step) {
            assert_eq!(g.scan(piece), None, "step {step}");
        }
        assert_eq!(g.state, State::Off, "step {step}");
    }
    // Not quite the preface: HTTP/1, whose first head hyper refuses (the version is 2.0) or,
    // with a method named PRI, takes as a request like any other.
    let near = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r";
    let stream = [&near[..], b"X"].concat();
    for step in every_step(&stream) {
        let (_, why) = cut_at(&stream, step).unwrap_or_else(|| panic!("step {step}"));
        assert_eq!(why, Refusal::Malformed, "step {step}");
    }
    let pri = b"PRI * HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(cut_at(pri, pri.len()), Some((0, Refusal::Ambiguous)));
    for step in every_step(pri) {
        let (at, why) = cut_at(pri, step).unwrap_or_else(|| panic!("step {step}"));
        assert!(at < pri.len() && why == Refusal::Ambiguous, "step {step}");
    }
    // Later in a connection, the preface is a head hyper refuses.
    let later = [FIRST, &h2[..]].concat();
    assert_eq!(refuse_at(&later, later.len()), Some(later.len()));
}

#[test]
fn a_refused_read_cuts_the_buffer_and_later_reads_fail() {
    use tokio::io::AsyncReadExt;
    let stream = [
        FIRST,
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
    ]
    .concat();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut g = FramingGuard::new(&stream[..]);
        let mut buf = vec![0; 4096];
        assert_eq!(g.read(&mut buf).await.unwrap(), FIRST.len());
        assert_eq!(&buf[..FIRST.len()], FIRST);
        let err = g.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(g.read(&mut buf).await.is_err());
        // A refusal in the first bytes of a read fails that read itself.
        let mut g = FramingGuard::new(&stream[FIRST.len()..]);
        assert!(g.read(&mut buf).await.is_err());
    });
}

#[test]
fn a_chunked_body_ends_at_its_last_lf() {
    let body = b"3\r\nabc\r\n0\r\nA: b\r\n\r\n";
    assert_eq!(Chunked::Start.feed(body), Fed::Done(body.len()));
    assert_eq!(
        Chunked::Start.feed(&[&body[..], b"GET"].concat()),
        Fed::Done(body.len())
    );
    assert_eq!(
        Chunked::Start.feed(&body[..body.len() - 1]),
        Fed::More(Chunked::EndLf)
    );
    // So the next head starts right after it, and may be the full 64 KiB.
    let mut g = guard();
    assert_eq!(
        g.scan(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
        None
    );
    assert_eq!(g.scan(body), None);
    assert_eq!((g.state, g.head.len()), (State::Head, 0));
}

#[test]
fn the_blank_line_gate_looks_only_where_new_bytes_end_one() {
    use super::head::may_be_complete;
    let head = b"GET / HTTP/1.1\r\nA: b\r\n\r\n";
    let n = head.len();
    assert!(may_be_complete(head, 0));
    assert!(may_be_complete(head, n - 1));
    assert!(may_be_complete(head, n - 2));
    // Line ends that are not a blank line, and a blank line already looked at.
    assert!(!may_be_complete(&head[..n - 2], 0));
    assert!(!may_be_complete(&head[..n - 1], 0));
    assert!(!may_be_complete(head, n));
    assert!(may_be_complete(b"GET / HTTP/1.1\n\n", 15));
    assert!(!may_be_complete(b"GET / HTTP/1.1\n\nX", 17));
}

/// A writer without vectored writes that records what it is asked to do.
#[derive(Default)]
struct Plain {
    written: Vec<u8>,
    flushed: bool,
    shut: bool,
}

impl AsyncWrite for Plain {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().written.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().flushed = true;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().shut = true;
        Poll::Ready(Ok(()))
    }
}

/// The responses hyper writes pass straight through, by whichever write call it picks (it asks
/// `is_write_vectored` to choose).
#[test]
fn writes_pass_through_untouched() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut plain = FramingGuard::new(Plain::default());
        assert!(!plain.is_write_vectored());
        plain.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        plain.flush().await.unwrap();
        plain.shutdown().await.unwrap();
        assert_eq!(plain.inner.written, b"HTTP/1.1 200 OK\r\n\r\n");
        assert!(plain.inner.flushed && plain.inner.shut);

        let (mut client, server) = tokio::io::duplex(256);
        let mut g = FramingGuard::new(server);
        assert!(g.is_write_vectored());
        let bufs = [io::IoSlice::new(b"ab"), io::IoSlice::new(b"cd")];
        let n = g.write_vectored(&bufs).await.unwrap();
        assert!(n > 0);
        g.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, &b"abcd"[..n]);
    });
}

//! Where log lines go: one writer thread owns stderr, and request threads never write to it.
//!
//! Every line the process logs (the access log above all: one line per request) used to be a
//! `write` to stderr on the thread that served the request, under stderr's lock, so each request
//! paid a system call and two workers contended for one lock. Now:
//!
//! - the worker threads that serve clients ([`buffer_this_thread`]) append each formatted line to
//!   a buffer of their own and hand it over in chunks of [`CHUNK`] bytes, and at least every
//!   [`FLUSH_EVERY`] ([`flush_this_thread`], called by each worker's timer and when it stops);
//! - every other thread hands over each line at once (start-up, reloads, the admin listener, the
//!   CLI), so those lines are not delayed;
//! - one thread writes the chunks to stderr in the order they were handed over. Lines are never
//!   split or interleaved: a chunk holds whole lines, and this thread is stderr's only writer.
//!
//! The hand-over is a bounded queue of [`QUEUE`] chunks. When stderr cannot keep up and the queue
//! is full, the worker waits for room rather than dropping the line, and
//! `scangate_log_writer_waits_total` counts those waits. [`Flusher`], held by `main`, flushes what
//! is left at exit. A line is lost only if the process is killed (SIGKILL, abort) while it sits in
//! a worker's buffer: at most the last [`FLUSH_EVERY`] of that worker's lines.

use std::cell::RefCell;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use tracing_subscriber::fmt::MakeWriter;

/// A worker hands its buffer over once it holds this many bytes (about a hundred access lines).
pub const CHUNK: usize = 16 * 1024;

/// Longest a line waits in a worker's buffer, provided the worker's timer runs.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Chunks queued for the writer thread before a worker has to wait: 1 MiB of full chunks.
pub const QUEUE: usize = 64;

/// How long [`Flusher`] waits at exit for the writer thread to write what is queued.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// What travels to the writer thread.
enum Message {
    /// Whole lines, to write as they are.
    Lines(Vec<u8>),
    /// Write everything queued before this, flush, then answer.
    Sync(mpsc::Sender<()>),
}

/// The sending end of the queue to the writer thread, and the wait counter.
#[derive(Clone)]
pub struct Pipe {
    tx: SyncSender<Message>,
    waits: Counter,
}

impl Pipe {
    /// Starts a thread that writes every chunk it is handed to `sink`, in order. `queue` chunks
    /// may wait for it; a sender finding the queue full waits and counts that in `waits`.
    pub fn start(sink: Box<dyn Write + Send>, queue: usize, waits: Counter) -> io::Result<Pipe> {
        let (tx, rx) = mpsc::sync_channel(queue);
        std::thread::Builder::new()
            .name("scangate-log".into())
            .spawn(move || write_all(sink, rx))?;
        Ok(Pipe { tx, waits })
    }

    /// Hands `lines` to the writer thread, waiting for room when the queue is full.
    pub fn send(&self, lines: Vec<u8>) {
        if lines.is_empty() {
            return;
        }
        match self.tx.try_send(Message::Lines(lines)) {
            Ok(()) => {}
            Err(TrySendError::Full(message)) => {
                self.waits.inc();
                // The writer thread only ends when every sender is gone, so this cannot fail
                // while `self` exists; if it did, there is nowhere left to write anyway.
                let _ = self.tx.send(message);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Waits, at most `deadline`, until everything handed over before this call is written and
    /// the sink flushed. False when the deadline passed first.
    pub fn sync(&self, deadline: Duration) -> bool {
        let (done_tx, done_rx) = mpsc::channel();
        if self.tx.send(Message::Sync(done_tx)).is_err() {
            return false;
        }
        done_rx.recv_timeout(deadline).is_ok()
    }
}

/// The writer thread: writes chunks in arrival order until every sender is gone. A failed write
/// (stderr closed, disk full) drops that chunk and goes on: there is nowhere to report it.
fn write_all(mut sink: Box<dyn Write + Send>, rx: Receiver<Message>) {
    for message in rx {
        match message {
            Message::Lines(lines) => {
                let _ = sink.write_all(&lines);
            }
            Message::Sync(done) => {
                let _ = sink.flush();
                let _ = done.send(());
            }
        }
    }
    let _ = sink.flush();
}

/// A thread's pending lines.
struct Buffer {
    lines: Vec<u8>,
    /// When the oldest pending line was added.
    since: Option<Instant>,
}

impl Buffer {
    const fn new() -> Buffer {
        Buffer {
            lines: Vec::new(),
            since: None,
        }
    }

    /// Adds a line; returns the chunk to hand over once the buffer holds `chunk` bytes.
    fn push(&mut self, line: &[u8], chunk: usize, now: Instant) -> Option<Vec<u8>> {
        self.push_with(|lines| lines.extend_from_slice(line), chunk, now)
    }

    /// Adds the line that `format` appends; returns the chunk to hand over once the buffer holds
    /// `chunk` bytes.
    fn push_with(
        &mut self,
        format: impl FnOnce(&mut Vec<u8>),
        chunk: usize,
        now: Instant,
    ) -> Option<Vec<u8>> {
        format(&mut self.lines);
        self.since.get_or_insert(now);
        (self.lines.len() >= chunk).then(|| self.take())
    }

    /// Everything pending, leaving the buffer empty (with its capacity for the next lines).
    fn take(&mut self) -> Vec<u8> {
        self.since = None;
        let capacity = self.lines.capacity().max(CHUNK);
        std::mem::replace(&mut self.lines, Vec::with_capacity(capacity))
    }

    /// Whether the oldest pending line has waited `max` or more.
    fn due(&self, max: Duration, now: Instant) -> bool {
        self.since
            .is_some_and(|since| now.duration_since(since) >= max)
    }
}

/// Per thread: `None` hands each line over at once; `Some` buffers (worker threads).
struct Local {
    buffer: Option<Buffer>,
}

impl Drop for Local {
    /// A thread that ends hands over what it still holds.
    fn drop(&mut self) {
        if let (Some(buffer), Some(pipe)) = (self.buffer.as_mut(), PIPE.get()) {
            pipe.send(buffer.take());
        }
    }
}

thread_local! {
    static LOCAL: RefCell<Local> = const { RefCell::new(Local { buffer: None }) };
}

/// The process's pipe to stderr, once [`init`] ran. Tests that run the gateway in-process never
/// start it, and their lines go wherever their own subscriber sends them.
static PIPE: OnceLock<Pipe> = OnceLock::new();

/// `scangate_log_writer_waits_total`: times a thread had to wait because stderr could not keep up.
pub fn waits() -> &'static Counter {
    static WAITS: OnceLock<Counter> = OnceLock::new();
    WAITS.get_or_init(Counter::default)
}

/// Makes the calling thread buffer its lines (see the module docs). The caller must call
/// [`flush_this_thread`] at least every [`FLUSH_EVERY`] while it runs.
pub fn buffer_this_thread() {
    if PIPE.get().is_some() {
        LOCAL.with(|local| {
            local.borrow_mut().buffer.get_or_insert_with(Buffer::new);
        });
    }
}

/// Hands over the calling thread's pending lines if the oldest has waited three quarters of
/// [`FLUSH_EVERY`], or all of them with `all`. Called every quarter of [`FLUSH_EVERY`], that keeps
/// every line's wait under [`FLUSH_EVERY`].
pub fn flush_this_thread(all: bool) {
    let Some(pipe) = PIPE.get() else { return };
    let chunk = LOCAL.with(|local| {
        let mut local = local.borrow_mut();
        let buffer = local.buffer.as_mut()?;
        (all || buffer.due(FLUSH_EVERY * 3 / 4, Instant::now())).then(|| buffer.take())
    });
    if let Some(chunk) = chunk {
        pipe.send(chunk);
    }
}

/// The shape of the process's log lines, as `main` configured `tracing_subscriber::fmt`: lines
/// that bypass tracing ([`write_with`]) must look exactly like the ones that go through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    /// fmt's default "full" format without colours: `TIMESTAMP  LEVEL target: key=value …`.
    Text,
    /// fmt's JSON format with the event's fields flattened into the object.
    Json,
}

/// The format [`init`] was given, when lines may be written around tracing. Unset (tests that
/// run the gateway in-process, or a terminal that gets colours) means every line goes through
/// tracing.
static DIRECT: OnceLock<LineFormat> = OnceLock::new();

/// The format in which a hot-path line (the access line) may be formatted straight into the
/// calling thread's buffer by [`write_with`], instead of going through tracing's general-purpose
/// event machinery; `None` when it must go through tracing.
pub fn direct_format() -> Option<LineFormat> {
    DIRECT.get().copied()
}

/// Appends one line that `format` writes (a whole line, with its newline) to the calling
/// thread's buffer, or hands it straight to the writer thread from a thread that does not buffer.
/// The same path as [`PipeWriter`], without the intermediate copy. Without the pipe (no
/// [`init`]), the line goes to stderr.
pub fn write_with(format: impl FnOnce(&mut Vec<u8>)) {
    let Some(pipe) = PIPE.get() else {
        let mut line = Vec::new();
        format(&mut line);
        let _ = io::stderr().write_all(&line);
        return;
    };
    let now = Instant::now();
    let handed = LOCAL.with(|local| {
        let mut local = local.borrow_mut();
        match local.buffer.as_mut() {
            Some(buffer) => buffer.push_with(format, CHUNK, now),
            None => {
                let mut line = Vec::new();
                format(&mut line);
                Some(line)
            }
        }
    });
    if let Some(chunk) = handed {
        pipe.send(chunk);
    }
}

/// What `tracing_subscriber::fmt` writes each formatted event to: the calling thread's buffer, or
/// straight to the pipe.
#[derive(Debug, Clone, Copy, Default)]
pub struct PipeWriter;

impl Write for PipeWriter {
    /// fmt formats a whole event and writes it with one `write_all`, so each call is whole lines.
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let Some(pipe) = PIPE.get() else {
            return io::stderr().write(line);
        };
        let now = Instant::now();
        let handed = LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            match local.buffer.as_mut() {
                Some(buffer) => buffer.push(line, CHUNK, now),
                None => Some(line.to_vec()),
            }
        });
        if let Some(chunk) = handed {
            pipe.send(chunk);
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for PipeWriter {
    type Writer = PipeWriter;

    fn make_writer(&'a self) -> PipeWriter {
        PipeWriter
    }
}

/// Held by `main` for the life of the process: at exit it hands over the main thread's lines and
/// waits until the writer thread has written everything handed over before.
#[must_use = "dropping the flusher is what writes the last lines"]
pub struct Flusher(());

impl Drop for Flusher {
    fn drop(&mut self) {
        if let Some(pipe) = PIPE.get() {
            flush_this_thread(true);
            let _ = pipe.sync(EXIT_WAIT);
        }
    }
}

/// Starts the writer thread on stderr and returns what `tracing_subscriber::fmt` should write to,
/// with the [`Flusher`] for `main` to hold. If the thread cannot start, lines go to stderr
/// directly, as before. `direct` is the format fmt was configured with, when hot-path lines may
/// be formatted around tracing in that same format ([`write_with`]); `None` when fmt writes
/// something [`LineFormat`] does not reproduce (colours).
pub fn init(direct: Option<LineFormat>) -> (PipeWriter, Flusher) {
    if PIPE.get().is_none() {
        if let Ok(pipe) = Pipe::start(Box::new(io::stderr()), QUEUE, waits().clone()) {
            let _ = PIPE.set(pipe);
            if let Some(format) = direct {
                let _ = DIRECT.set(format);
            }
        }
    }
    (PipeWriter, Flusher(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A sink that records what it was given, and can be held shut.
    #[derive(Clone, Default)]
    struct Sink {
        written: Arc<Mutex<Vec<u8>>>,
        gate: Arc<Mutex<()>>,
    }

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let _open = self.gate.lock().unwrap();
            self.written.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_queue_makes_the_sender_wait_counts_it_and_loses_nothing() {
        let sink = Sink::default();
        let waits = Counter::default();
        let pipe = Pipe::start(Box::new(sink.clone()), 2, waits.clone()).unwrap();
        let shut = sink.gate.lock().unwrap();
        // The writer thread takes one chunk and blocks on the gate; two more fill the queue.
        let sender = {
            let pipe = pipe.clone();
            std::thread::spawn(move || {
                for i in 0..10 {
                    pipe.send(format!("line {i}\n").into_bytes());
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while waits.get() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        // One wait, or two if the writer thread took its first chunk only after the queue filled.
        assert!(waits.get() >= 1, "the sender should be waiting for room");
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            waits.get() <= 2,
            "{} waits while the sink is shut",
            waits.get()
        );
        assert!(
            !sender.is_finished(),
            "a full queue must hold the sender, not drop lines"
        );
        drop(shut);
        sender.join().unwrap();
        assert!(pipe.sync(Duration::from_secs(5)));
        let written = String::from_utf8(sink.written.lock().unwrap().clone()).unwrap();
        let expected: String = (0..10).map(|i| format!("line {i}\n")).collect();
        assert_eq!(written, expected);
    }

    #[test]
    fn sync_waits_for_what_was_handed_over_before_it() {
        let sink = Sink::default();
        let pipe = Pipe::start(Box::new(sink.clone()), 4, Counter::default()).unwrap();
        pipe.send(b"a\n".to_vec());
        pipe.send(Vec::new());
        pipe.send(b"b\n".to_vec());
        assert!(pipe.sync(Duration::from_secs(5)));
        assert_eq!(&*sink.written.lock().unwrap(), b"a\nb\n");
    }

    #[test]
    fn sync_gives_up_at_its_deadline_when_the_sink_is_stuck() {
        let sink = Sink::default();
        let pipe = Pipe::start(Box::new(sink.clone()), 4, Counter::default()).unwrap();
        let shut = sink.gate.lock().unwrap();
        pipe.send(b"stuck\n".to_vec());
        assert!(!pipe.sync(Duration::from_millis(50)));
        drop(shut);
        assert!(pipe.sync(Duration::from_secs(5)));
    }

    #[test]
    fn a_line_formatted_in_place_is_buffered_like_a_copied_one() {
        let t0 = Instant::now();
        let mut buffer = Buffer::new();
        let line = |text: &'static [u8]| move |lines: &mut Vec<u8>| lines.extend_from_slice(text);
        assert_eq!(buffer.push_with(line(b"one\n"), 8, t0), None);
        assert!(buffer.due(Duration::from_secs(1), t0 + Duration::from_secs(1)));
        let chunk = buffer.push_with(line(b"two\n"), 8, t0 + Duration::from_millis(1));
        assert_eq!(chunk.as_deref(), Some(&b"one\ntwo\n"[..]));
        assert!(!buffer.due(Duration::ZERO, t0 + Duration::from_secs(9)));
    }

    #[test]
    fn a_buffer_hands_over_whole_lines_at_the_chunk_size_and_when_due() {
        let t0 = Instant::now();
        let mut buffer = Buffer::new();
        assert!(
            !buffer.due(Duration::ZERO, t0),
            "an empty buffer is never due"
        );
        assert_eq!(buffer.push(b"12345\n", 12, t0), None);
        assert!(!buffer.due(Duration::from_secs(1), t0 + Duration::from_millis(999)));
        assert!(buffer.due(Duration::from_secs(1), t0 + Duration::from_secs(1)));
        // The oldest line sets the age: a later line does not reset it.
        assert_eq!(
            buffer.push(b"ab\n", 12, t0 + Duration::from_millis(500)),
            None
        );
        assert!(buffer.due(Duration::from_secs(1), t0 + Duration::from_secs(1)));
        let chunk = buffer.push(b"cdef\n", 12, t0 + Duration::from_millis(600));
        assert_eq!(chunk.as_deref(), Some(&b"12345\nab\ncdef\n"[..]));
        assert!(buffer.lines.is_empty());
        assert!(!buffer.due(Duration::ZERO, t0 + Duration::from_secs(9)));
        assert_eq!(buffer.take(), Vec::<u8>::new());
    }
}

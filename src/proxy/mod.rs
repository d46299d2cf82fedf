//! The gateway proper: listener and connections ([`server`]), each connection's idle deadline and
//! drain ([`conn`]), its write deadline ([`send_timeout`]) and the per-address cap
//! ([`client_cap`]), the request path ([`handler`]) with its `scanfile` path check
//! ([`scanfile`]), bodies ([`body`]), the access log and request metrics ([`access`]), the scan
//! audit (verdicts per credential, the audit log, per-credential statistics: [`audit`]), header
//! rules ([`headers`]), the scan engines ([`upstream`]: selection, sessions and queue, health),
//! and the one mapping from failures to statuses ([`error`]).

pub mod access;
pub mod access_line;
pub mod audit;
pub mod body;
pub mod client_cap;
pub mod conn;
pub mod error;
pub mod exchange;
pub mod forward;
pub mod framing;
pub mod handler;
pub mod headers;
pub mod limits;
pub mod scanfile;
pub mod send_timeout;
pub mod server;
pub mod tls;
pub mod upstream;

/// `Box::pin(make())`, with the box allocated first and the future written into it.
///
/// A request-path future is a few KiB, most of it room for states it has not reached yet.
/// `Box::pin(f())` builds it on the stack and then copies every byte into the new box; allocating
/// first lets the compiler build it where it will live (`benches/RESULTS.md`, 2026-12-03 19:30).
#[inline(always)]
pub(crate) fn boxed<F>(make: impl FnOnce() -> F) -> std::pin::Pin<Box<F>> {
    let slot = Box::<F>::new_uninit();
    Box::into_pin(Box::write(slot, make()))
}

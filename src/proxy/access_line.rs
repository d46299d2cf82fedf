//! The access line: one per request, so the one log line whose cost counts.
//!
//! Through tracing, every access line built an event, walked its fields through a visitor,
//! formatted the time and the fields into a fresh `String` and copied that into the worker's
//! buffer: about a quarter of a request's CPU time with the log on (`benches/RESULTS.md`,
//! 2026-12-02). When `main` configured a format that [`LineFormat`] reproduces, the line is
//! instead written straight into the worker's buffer ([`crate::logging::write_with`]), byte for
//! byte what tracing's fmt would have written (a test holds the two to that). Otherwise (a test's
//! own subscriber, a terminal with colours) it goes through tracing as before. Either way the
//! `scangate::access` target's filter decides whether it is written at all.

use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use http::Method;

use crate::logging::{self, LineFormat};

/// The fields of one access line, borrowed from the request's record. The token's Name, never
/// the token; the path without its query.
#[derive(Debug, Clone, Copy)]
pub struct AccessLine<'a> {
    /// The client's address; `None` on a unix socket (logged as `unix`).
    pub client: Option<SocketAddr>,
    /// The request's method.
    pub method: &'a Method,
    /// The request's path, without the query (which may hold anything).
    pub path: &'a str,
    /// The status the client got.
    pub status: u16,
    /// From the request's arrival to the end of the response body.
    pub duration_ms: f64,
    /// Body bytes received from the client.
    pub bytes_in: u64,
    /// Body bytes sent to the client.
    pub bytes_out: u64,
    /// The principal's Name, once authenticated.
    pub token: Option<&'a str>,
    /// Why the gateway answered itself.
    pub reason: Option<&'a str>,
    /// The engine that served the request.
    pub upstream: Option<&'a str>,
    /// How long the request waited for an engine session.
    pub queued_ms: Option<f64>,
}

impl AccessLine<'_> {
    /// Writes the line, if the `scangate::access` target is on at `info`.
    pub fn log(&self) {
        if !tracing::enabled!(target: "scangate::access", tracing::Level::INFO) {
            return;
        }
        match logging::direct_format() {
            Some(format) => {
                let now = SystemTime::now();
                logging::write_with(|buf| self.write(buf, format, now));
            }
            None => self.event(),
        }
    }

    /// The line as a tracing event, for subscribers other than the process's own.
    fn event(&self) {
        tracing::info!(
            target: "scangate::access",
            client = %Client(self.client),
            method = %self.method,
            path = self.path,
            status = self.status,
            duration_ms = self.duration_ms,
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            token = self.token,
            reason = self.reason,
            upstream = self.upstream,
            queued_ms = self.queued_ms,
        );
    }

    /// Appends the whole line, newline included, in `format`, stamped `now`.
    pub fn write(&self, buf: &mut Vec<u8>, format: LineFormat, now: SystemTime) {
        match format {
            LineFormat::Json => self.write_json(buf, now),
            LineFormat::Text => self.write_text(buf, now),
        }
    }

    /// fmt's JSON with flattened fields: time, level, the fields in order (an absent optional
    /// field is left out), then the target. Strings go through serde_json and numbers through the
    /// itoa and ryu that serde_json uses, as fmt's do, so escaping and formatting are the same.
    fn write_json(&self, buf: &mut Vec<u8>, now: SystemTime) {
        buf.extend_from_slice(b"{\"timestamp\":\"");
        write_timestamp(buf, now);
        // An address (digits, dots, colons, brackets, hex, `%` and a scope number) or `unix`
        // needs no JSON escaping, so it goes straight between the quotes.
        buf.extend_from_slice(b"\",\"level\":\"INFO\",\"client\":\"");
        write_client(buf, self.client);
        buf.extend_from_slice(b"\",\"method\":");
        json_str(buf, self.method.as_str());
        buf.extend_from_slice(b",\"path\":");
        json_str(buf, self.path);
        buf.extend_from_slice(b",\"status\":");
        integer(buf, self.status);
        buf.extend_from_slice(b",\"duration_ms\":");
        float(buf, self.duration_ms);
        buf.extend_from_slice(b",\"bytes_in\":");
        integer(buf, self.bytes_in);
        buf.extend_from_slice(b",\"bytes_out\":");
        integer(buf, self.bytes_out);
        for (name, value) in [
            (&b",\"token\":"[..], self.token),
            (b",\"reason\":", self.reason),
            (b",\"upstream\":", self.upstream),
        ] {
            if let Some(value) = value {
                buf.extend_from_slice(name);
                json_str(buf, value);
            }
        }
        if let Some(queued) = self.queued_ms {
            buf.extend_from_slice(b",\"queued_ms\":");
            float(buf, queued);
        }
        buf.extend_from_slice(b",\"target\":\"scangate::access\"}\n");
    }

    /// fmt's default ("full") format without colours: strings quoted and escaped as `Debug`
    /// does, displayed values (client, method) bare, numbers as `Debug` prints them.
    fn write_text(&self, buf: &mut Vec<u8>, now: SystemTime) {
        write_timestamp(buf, now);
        buf.extend_from_slice(b"  INFO scangate::access: client=");
        write_client(buf, self.client);
        buf.extend_from_slice(b" method=");
        buf.extend_from_slice(self.method.as_str().as_bytes());
        buf.extend_from_slice(b" path=");
        debug_str(buf, self.path);
        buf.extend_from_slice(b" status=");
        integer(buf, self.status);
        buf.extend_from_slice(b" duration_ms=");
        float(buf, self.duration_ms);
        buf.extend_from_slice(b" bytes_in=");
        integer(buf, self.bytes_in);
        buf.extend_from_slice(b" bytes_out=");
        integer(buf, self.bytes_out);
        for (name, value) in [
            (&b" token="[..], self.token),
            (b" reason=", self.reason),
            (b" upstream=", self.upstream),
        ] {
            if let Some(value) = value {
                buf.extend_from_slice(name);
                debug_str(buf, value);
            }
        }
        if let Some(queued) = self.queued_ms {
            buf.extend_from_slice(b" queued_ms=");
            float(buf, queued);
        }
        buf.push(b'\n');
    }
}

/// The client as [`Client`] displays it. An IPv4 address (nearly every client) is written digit
/// by digit; the rest through `Display`.
fn write_client(buf: &mut Vec<u8>, client: Option<SocketAddr>) {
    match client {
        Some(SocketAddr::V4(v4)) => {
            let [a, b, c, d] = v4.ip().octets();
            for (i, octet) in [a, b, c, d].into_iter().enumerate() {
                if i > 0 {
                    buf.push(b'.');
                }
                integer(buf, octet);
            }
            buf.push(b':');
            integer(buf, v4.port());
        }
        other => {
            let _ = write!(buf, "{}", Client(other));
        }
    }
}

/// An integer in decimal, as `Display`, `Debug` and serde_json write it.
fn integer(buf: &mut Vec<u8>, value: impl itoa::Integer) {
    buf.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// A finite float as serde_json writes it (ryu) and, for the values a duration in milliseconds
/// takes (0 and 0.001 to 10^15), as `Debug` prints it; `null` for one that is not finite, as
/// serde_json writes it (a duration never is).
fn float(buf: &mut Vec<u8>, value: f64) {
    if value.is_finite() {
        buf.extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
    } else {
        buf.extend_from_slice(b"null");
    }
}

/// A string quoted and escaped as `Debug` does. Printable ASCII without quotes or backslashes
/// (a path, a name, an upstream URL nearly always) is copied as it is.
fn debug_str(buf: &mut Vec<u8>, value: &str) {
    let plain = (value.bytes()).all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\');
    if plain {
        buf.push(b'"');
        buf.extend_from_slice(value.as_bytes());
        buf.push(b'"');
    } else {
        let _ = write!(buf, "{value:?}");
    }
}

/// `ip:port`, or `unix` for a unix-socket client; formatted straight into the log line.
struct Client(Option<SocketAddr>);

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("unix"),
        }
    }
}

/// A JSON string, escaped as serde_json escapes it (fmt's JSON goes through serde_json too).
fn json_str(buf: &mut Vec<u8>, value: &str) {
    let _ = serde_json::to_writer(&mut *buf, value);
}

/// `YYYY-MM-DDTHH:MM:SS.uuuuuuZ` in UTC, as fmt's default timer writes it. The part up to the
/// second is formatted once a second per thread.
pub fn write_timestamp(buf: &mut Vec<u8>, now: SystemTime) {
    thread_local! {
        static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
    }
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let prefix = SECOND.with(|cached| {
        let (at, prefix) = cached.get();
        if at == secs {
            return prefix;
        }
        let prefix = format_second(secs);
        cached.set((secs, prefix));
        prefix
    });
    buf.extend_from_slice(&prefix);
    let micros = since.subsec_micros();
    let mut digits = *b".000000Z";
    for (i, slot) in digits[1..7].iter_mut().enumerate() {
        *slot = b'0' + (micros / 10u32.pow(5 - i as u32) % 10) as u8;
    }
    buf.extend_from_slice(&digits);
}

/// `YYYY-MM-DDTHH:MM:SS` for a time in seconds since the epoch (years 1970–9999).
fn format_second(secs: u64) -> [u8; 19] {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let mut out = [0u8; 19];
    let text = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    let n = text.len().min(19);
    out[..n].copy_from_slice(&text.as_bytes()[..n]);
    out
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests;

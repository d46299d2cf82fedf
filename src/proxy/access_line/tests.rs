//! The direct access line must be, byte for byte, what tracing's fmt writes for the same event
//! in the same configuration (`main::init_tracing`), but for the time of day.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Method;
use tracing_subscriber::fmt::MakeWriter;

use super::*;

/// Collects what a test subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// What fmt writes for `line`, configured as `main` configures it for `format`.
fn through_tracing(line: &AccessLine<'_>, format: LineFormat) -> String {
    let captured = Captured::default();
    let builder = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(captured.clone());
    let dispatch = match format {
        LineFormat::Text => tracing::Dispatch::new(builder.finish()),
        LineFormat::Json => tracing::Dispatch::new(builder.json().flatten_event(true).finish()),
    };
    tracing::dispatcher::with_default(&dispatch, || line.event());
    let written = captured.0.lock().unwrap().clone();
    String::from_utf8(written).unwrap()
}

fn direct(line: &AccessLine<'_>, format: LineFormat, now: SystemTime) -> String {
    let mut buf = b"earlier line\n".to_vec();
    line.write(&mut buf, format, now);
    let text = String::from_utf8(buf).unwrap();
    text.strip_prefix("earlier line\n")
        .expect("a line is appended, never overwrites")
        .to_owned()
}

/// The line with its timestamp (`YYYY-MM-DDTHH:MM:SS.uuuuuuZ`, 27 characters) replaced, after
/// checking that it has that shape.
fn without_time(line: &str) -> String {
    let start = line.find("20").expect("a timestamp");
    let stamp = &line[start..start + 27];
    let shape: String = stamp
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape, "9999-99-99T99:99:99.999999Z", "{line}");
    format!("{}TIME{}", &line[..start], &line[start + 27..])
}

fn full<'a>(method: &'a Method) -> AccessLine<'a> {
    AccessLine {
        client: Some("[2001:db8::7]:61234".parse().unwrap()),
        method,
        path: "/api/v3.1/scanmemory",
        status: 200,
        duration_ms: 12.345,
        bytes_in: 68,
        bytes_out: 1_234_567,
        token: Some("mail \"gateway\" ünïcode\\tab\t"),
        reason: Some("upstream_timeout"),
        upstream: Some("http://10.0.0.7:9999"),
        queued_ms: Some(0.25),
    }
}

fn bare<'a>(method: &'a Method) -> AccessLine<'a> {
    AccessLine {
        client: None,
        method,
        path: "/odd\"path\\",
        status: 401,
        duration_ms: 0.0,
        bytes_in: 0,
        bytes_out: 0,
        token: None,
        reason: None,
        upstream: None,
        queued_ms: None,
    }
}

#[test]
fn the_direct_line_is_what_tracing_writes_in_both_formats() {
    let get = Method::GET;
    let custom = Method::from_bytes(b"PROPFIND").unwrap();
    let now = SystemTime::now();
    let cases = [
        full(&get),
        bare(&custom),
        AccessLine {
            client: Some("127.0.0.1:5".parse().unwrap()),
            duration_ms: 1e-3,
            queued_ms: Some(120_000.5),
            ..bare(&get)
        },
    ];
    for format in [LineFormat::Json, LineFormat::Text] {
        for line in &cases {
            let ours = direct(line, format, now);
            let theirs = through_tracing(line, format);
            assert!(
                ours.ends_with('\n') && ours.matches('\n').count() == 1,
                "{ours:?}"
            );
            assert_eq!(without_time(&ours), without_time(&theirs), "{format:?}");
        }
    }
}

#[test]
fn the_json_line_parses_and_leaves_out_absent_fields() {
    let get = Method::GET;
    let line = direct(&bare(&get), LineFormat::Json, SystemTime::now());
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["client"], "unix");
    assert_eq!(v["path"], "/odd\"path\\");
    assert_eq!(v["status"], 401);
    assert_eq!(v["target"], "scangate::access");
    for absent in ["token", "reason", "upstream", "queued_ms"] {
        assert!(v.get(absent).is_none(), "{absent} in {line}");
    }
    let line = direct(&full(&get), LineFormat::Json, SystemTime::now());
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["token"], "mail \"gateway\" ünïcode\\tab\t");
    assert_eq!(v["queued_ms"], 0.25);
    assert_eq!(v["bytes_out"], 1_234_567);
}

#[test]
fn timestamps_are_utc_dates_with_microseconds() {
    let at = |secs: u64, micros: u64| {
        let mut buf = Vec::new();
        write_timestamp(
            &mut buf,
            UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros),
        );
        String::from_utf8(buf).unwrap()
    };
    assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
    assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
    assert_eq!(at(951_868_799, 999_999), "2000-02-29T23:59:59.999999Z");
    assert_eq!(at(1_709_251_199, 10), "2024-02-29T23:59:59.000010Z");
    assert_eq!(at(1_798_761_599, 500_000), "2026-12-31T23:59:59.500000Z");
    assert_eq!(at(1_798_761_600, 0), "2027-01-01T00:00:00.000000Z");
    assert_eq!(at(4_102_444_800, 1), "2100-01-01T00:00:00.000001Z");
    // The per-thread cache of the second never serves a stale date.
    assert_eq!(at(1_798_761_599, 1), "2026-12-31T23:59:59.000001Z");
    assert_eq!(at(86_399, 0), "1970-01-01T23:59:59.000000Z");
}

#[test]
fn durations_print_as_debug_and_serde_json_print_them() {
    // Every duration the access line can hold is a whole number of microseconds, in ms.
    let micros = (0..20_000u64)
        .chain((0..40).map(|i| 7u64.pow(i / 2) + i as u64))
        .chain([u32::MAX as u64, 86_400_000_000, 999_999_999_999_999]);
    for us in micros {
        let ms = us as f64 / 1000.0;
        let mut ours = Vec::new();
        float(&mut ours, ms);
        let ours = String::from_utf8(ours).unwrap();
        assert_eq!(ours, format!("{ms:?}"), "{us} µs");
        assert_eq!(ours, serde_json::to_string(&ms).unwrap(), "{us} µs");
    }
    let mut nan = Vec::new();
    float(&mut nan, f64::NAN);
    assert_eq!(nan, b"null");
}

#[test]
fn strings_are_quoted_as_debug_quotes_them() {
    for s in [
        "",
        "plain/path-1.2_~",
        "quote\"",
        "back\\slash",
        // Strings of nothing but the one character the fast path must not copy.
        "\"",
        "\"\"",
        "\\",
        "tab\t",
        "ünï",
        "\u{7f}",
        "a b",
    ] {
        let mut ours = Vec::new();
        debug_str(&mut ours, s);
        assert_eq!(String::from_utf8(ours).unwrap(), format!("{s:?}"));
    }
    for addr in [
        "10.0.0.1:0",
        "255.255.255.255:65535",
        "[::1]:8",
        "[fe80::1%7]:9",
    ] {
        let addr: SocketAddr = addr.parse().unwrap();
        let mut ours = Vec::new();
        write_client(&mut ours, Some(addr));
        assert_eq!(String::from_utf8(ours).unwrap(), addr.to_string());
    }
}

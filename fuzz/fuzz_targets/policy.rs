//! The role policy's path parsing, through its public decision only (`auth::policy::decide`).
//!
//! Input: byte 0 picks the role and byte 1 the method; the rest is the path. Invariants: no
//! panic, full-access roles are allowed everything, and a restricted role is never allowed a
//! path that names an Administrator-only operation (`clearstatistics`, `update/start`) once
//! percent-encoding, backslashes, dot and empty segments are undone the way a lenient backend
//! might undo them.
#![no_main]

use http::Method;
use libfuzzer_sys::fuzz_target;
use scangate::config::Role;

/// The one call into the policy; adjust here if its signature changes. The policy no longer
/// looks at the method (OPTIONS is allowed exactly where the path is), so `_method` only keeps
/// the input layout and the seeds stable.
fn allowed(role: Option<Role>, _method: &Method, path: &str) -> bool {
    use scangate::auth::policy::{decide, Decision, Grant};
    decide(Grant::new(role, None), path, false) == Decision::Allow
}

fuzz_target!(|data: &[u8]| {
    let [r, m, path @ ..] = data else {
        return;
    };
    let Ok(path) = std::str::from_utf8(path) else {
        return;
    };
    let role = match r % 4 {
        0 => None,
        1 => Some(Role::Administrator),
        2 => Some(Role::SeniorSecurityOfficer),
        _ => Some(Role::SecurityOfficer),
    };
    let methods = [
        Method::GET,
        Method::POST,
        Method::OPTIONS,
        Method::PUT,
        Method::HEAD,
    ];
    let method = &methods[usize::from(*m) % methods.len()];
    let ok = allowed(role, method, path);
    if matches!(role, None | Some(Role::Administrator)) {
        assert!(ok, "full access denied {method} {path:?}");
        return;
    }
    if ok {
        let segments = lenient_segments(path);
        let names = |op: &[&str]| segments.windows(op.len()).any(|w| w == op);
        assert!(
            !names(&["clearstatistics"]) && !names(&["update", "start"]),
            "{role:?} allowed {method} {path:?}, which a lenient backend reads as {segments:?}"
        );
    }
});

/// The path's segments as a backend that decodes everything might see them: percent-decoded
/// (repeatedly), `\` as `/`, query or parameters as more segments, `.` and empty ones dropped,
/// `..` applied, lower case.
fn lenient_segments(path: &str) -> Vec<String> {
    let mut text = path.to_ascii_lowercase();
    for _ in 0..3 {
        text = percent_decode(&text);
    }
    let mut out: Vec<String> = Vec::new();
    for seg in text.split(['/', '\\', '?', ';', '#']) {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_owned()),
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).to_ascii_lowercase()
}

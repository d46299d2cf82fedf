//! The config file as `serve` and `check` read it: bytes → UTF-8 → parse and validate, with
//! relative paths resolved against the file's folder (`config::load::{utf8, parse_at}`).
//!
//! Invariants: no panic; a valid file resolves every path it names to an absolute one; every
//! error has a position inside the text and a rule, and renders.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use scangate::config::load;

fuzz_target!(|data: &[u8]| {
    let label = "fuzz.xml";
    let text = match load::utf8(data, label) {
        Ok(text) => text,
        Err(errors) => return check_errors(&errors, ""),
    };
    match load::parse_at(text, label, Path::new("/etc/scangate")) {
        Ok(settings) => {
            assert!(settings.gateway.token_key_file.is_absolute());
            if let Some(tls) = &settings.server.tls {
                assert!(tls.cert.is_absolute() && tls.key.is_absolute());
            }
        }
        Err(errors) => check_errors(&errors, text),
    }
});

fn check_errors(errors: &scangate::config::ConfigErrors, text: &str) {
    assert!(!errors.0.is_empty(), "an invalid file with no error");
    let lines = text.split('\n').count() as u32;
    for e in &errors.0 {
        assert!(
            e.line >= 1 && e.line <= lines.max(1),
            "line {} of {lines}: {e}",
            e.line
        );
        assert!(e.column >= 1, "column 0: {e}");
        assert!(!e.rule.is_empty(), "no rule: {e}");
    }
    assert!(!errors.to_string().is_empty());
}

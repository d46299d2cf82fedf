//! `token add` / `connection add` limit flags and `token list` showing limits, with the built
//! binary; every bad flag is refused with its exact message and leaves the file as it was.

mod common;

use std::path::Path;

use common::*;
use scangate::config::{load, LimitScope, Settings};

fn settings(config: &Path) -> Settings {
    load::read_settings(config).unwrap().1
}

fn seeded() -> ConfigDir {
    let cfg = Cfg::new(
        "http://127.0.0.1:9",
        &[Tok::new("seed", "Seed-Token-1", true)],
    );
    ConfigDir::new(&cfg)
}

#[test]
fn token_add_writes_a_rate_limit_and_list_shows_it() {
    let dir = seeded();
    let p = &dir.path;
    let add = scangate(
        p,
        &[
            "token",
            "add",
            "--name",
            "lim",
            "--rate-limit",
            "5",
            "--burst",
            "10",
            "--max-concurrent",
            "2",
            "--daily-quota",
            "1000",
        ],
    );
    assert_eq!(add.code, Some(0), "{}", add.stderr);
    let text = std::fs::read_to_string(p).unwrap();
    assert!(text.contains("<RateLimit>"), "{text}");
    let s = settings(p);
    let lim = s.auth.tokens.iter().find(|t| t.name == "lim").unwrap();
    let limits = lim.limits.as_deref().unwrap();
    assert_eq!(limits.summary(), "5/s burst 10, 2 concurrent, 1000/day");
    assert_eq!(limits.scope, LimitScope::Replica);
    let seed = s.auth.tokens.iter().find(|t| t.name == "seed").unwrap();
    assert!(seed.limits.is_none());

    let list = scangate(p, &["token", "list"]);
    assert_eq!(list.code, Some(0), "{}", list.stderr);
    let header = list.stdout.lines().next().unwrap();
    assert!(header.contains("LIMITS"), "{header}");
    let row = list.stdout.lines().find(|l| l.starts_with("lim ")).unwrap();
    assert!(
        row.contains("5/s burst 10, 2 concurrent, 1000/day"),
        "{row}"
    );
    let json = scangate(p, &["token", "list", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let limits: Vec<&str> = (rows.as_array().unwrap().iter())
        .map(|r| r["limits"].as_str().unwrap())
        .collect();
    assert_eq!(limits, ["-", "5/s burst 10, 2 concurrent, 1000/day"]);

    // --unlimited writes <RateLimit/>, which lifts the defaults.
    let add = scangate(p, &["token", "add", "--name", "vip", "--unlimited"]);
    assert_eq!(add.code, Some(0), "{}", add.stderr);
    assert!(std::fs::read_to_string(p).unwrap().contains("<RateLimit/>"));
}

#[test]
fn connection_add_writes_a_rate_limit() {
    let dir = seeded();
    let p = &dir.path;
    let add = scangate(
        p,
        &[
            "connection",
            "add",
            "--name",
            "siem",
            "--daily-quota",
            "50",
            "--monthly-quota",
            "900",
        ],
    );
    assert_eq!(add.code, Some(0), "{}", add.stderr);
    let s = settings(p);
    let siem = &s.auth.connections[0];
    assert_eq!(
        siem.limits.as_deref().unwrap().summary(),
        "50/day, 900/month"
    );
}

#[test]
fn bad_limit_flags_are_refused_and_leave_the_file_alone() {
    let dir = seeded();
    let p = &dir.path;
    let before = std::fs::read_to_string(p).unwrap();
    let cases: [(&[&str], i32, &str); 5] = [
        (
            &["--burst", "5"],
            64,
            "the following required arguments were not provided:\n  --rate-limit <N>",
        ),
        (&["--rate-limit", "0"], 64, "invalid value '0' for '--rate-limit <N>': 0 is not in 1..=1000000"),
        (&["--max-concurrent", "-1"], 64, "unexpected argument '-1' found"),
        (
            &["--limit-scope", "global"],
            64,
            "invalid value 'global' for '--limit-scope <SCOPE>'",
        ),
        (
            &["--daily-quota", "5", "--limit-scope", "cluster"],
            1,
            "RateLimit/LimitScope: LimitScope cluster needs a shared store: set GatewaySettings/Sessions/StateStore to a redis:// URL, or use replica",
        ),
    ];
    for (flags, code, message) in cases {
        let mut args = vec!["token", "add", "--name", "bad"];
        args.extend_from_slice(flags);
        let run = scangate(p, &args);
        assert_eq!(run.code, Some(code), "{flags:?}: {}", run.stderr);
        assert_eq!(run.stdout, "", "{flags:?}");
        assert!(run.stderr.contains(message), "{flags:?}: {}", run.stderr);
        assert_eq!(std::fs::read_to_string(p).unwrap(), before, "{flags:?}");
    }
}

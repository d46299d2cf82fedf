//! `scangate check` with the built binary: every invalid fixture fails with exit 1 and exactly the
//! validator's errors (whose wording `config_fixtures` pins down), a valid file passes with its token
//! counts, and the key file is checked as `serve` would need it.

mod common;

use std::path::Path;

use common::*;
use scangate::config::validate;

#[test]
fn every_invalid_fixture_fails_with_each_error_on_its_own_line() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let mut fixtures: Vec<_> = (std::fs::read_dir(&folder).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 25, "fixtures missing: {fixtures:?}");
    for path in &fixtures {
        let label = path.display().to_string();
        let text = std::fs::read_to_string(path).unwrap();
        let errors = validate::parse(&text, &label).expect_err(&label).0;
        let n = errors.len();
        let mut expected: String = errors
            .iter()
            .map(|e| format!("scangate check: {e}\n"))
            .collect();
        let plural = if n == 1 { "" } else { "s" };
        expected.push_str(&format!("scangate check: {label}: {n} error{plural}\n"));
        let run = scangate(path, &["check"]);
        assert_eq!(
            (run.code, run.stdout.as_str(), run.stderr.as_str()),
            (Some(1), "", expected.as_str()),
            "{label}"
        );
    }
    // One spelled out, so the chain above cannot hide a wrong format.
    let several = folder.join("several-errors.xml");
    let run = scangate(&several, &["check"]);
    let s = several.display();
    assert!(run.stderr.starts_with(&format!(
        "scangate check: {s}:13:11: ServerSettings/AuthSettings/AccessTokens/Token[1]/Enabled: Enabled \
         must be 0 or 1, found \"yes\"\nscangate check: {s}:16:11: "
    )));
    assert!(run
        .stderr
        .ends_with(&format!("scangate check: {s}: 5 errors\n")));
}

#[test]
fn a_valid_file_passes_with_its_token_counts() {
    let cfg = Cfg::new(
        "http://127.0.0.1:9",
        &[
            Tok::new("a", "Token-A-1", true),
            Tok::new("b", "Token-B-1", false),
            Tok::new("c", "Token-C-1", true),
        ],
    );
    let dir = ConfigDir::new(&cfg);
    let run = scangate(&dir.path, &["check"]);
    let summary = format!(
        "{}: valid; tokens: 2 enabled, 1 disabled\n",
        dir.path.display()
    );
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (Some(0), summary.as_str(), "")
    );
}

#[test]
fn the_key_file_is_checked_when_it_is_needed_or_present() {
    let cfg = Cfg::new("http://127.0.0.1:9", &[Tok::new("a", "Token-A-1", true)]);
    let dir = ConfigDir::new(&cfg);
    let (p, key) = (dir.path.display(), dir.dir.path().join("scangate.key"));
    let k = key.display();
    let failed = |run: &Run, error: &str| {
        let summary = format!("{p}: config valid; tokens: 1 enabled, 0 disabled\n");
        let stderr = format!("scangate check: {error}\nscangate check: {p}: 1 error\n");
        assert_eq!(
            (run.code, run.stdout.as_str(), run.stderr.as_str()),
            (Some(1), summary.as_str(), stderr.as_str())
        );
    };
    std::fs::remove_file(&key).unwrap();
    let missing =
        format!("{k}: cannot read token key file: No such file or directory (os error 2)");
    failed(&scangate(&dir.path, &["check"]), &missing);
    std::fs::write(&key, "short\n").unwrap();
    let malformed =
        format!("{k}: token key file must hold one line: the standard base64 of 32 random bytes");
    failed(&scangate(&dir.path, &["check"]), &malformed);

    // UseAccessToken 0: no key needed, but a present one must still be good.
    let mut off = cfg.clone();
    off.use_access_token = false;
    std::fs::write(&dir.path, off.xml()).unwrap();
    let run = scangate(&dir.path, &["check"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    std::fs::remove_file(&key).unwrap();
    let run = scangate(&dir.path, &["check"]);
    let summary = format!(
        "{p}: valid; tokens: 1 enabled, 0 disabled; UseAccessToken is 0, so no request is \
         authenticated\n"
    );
    assert_eq!((run.code, run.stdout.as_str()), (Some(0), summary.as_str()));
}

#[test]
fn an_unreadable_config_or_no_config_fails() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.xml");
    let run = scangate(&missing, &["check"]);
    let error = format!(
        "scangate check: {}: cannot read config: No such file or directory (os error 2)\n",
        missing.display()
    );
    assert_eq!((run.code, run.stderr.as_str()), (Some(1), error.as_str()));

    let mut bare = std::process::Command::new(env!("CARGO_BIN_EXE_scangate"));
    bare.arg("check").env_remove("SCANGATE_CONFIG");
    let run = finished(bare.output().unwrap());
    assert_eq!(run.code, Some(64));
    let run = scangate(&missing, &["check", "--bogus"]);
    assert_eq!(run.code, Some(64));
}

/// Upstream credentials and queries reach neither `check`'s output nor the reload error that the
/// log and the admin `/config` page show (`last_reload.error`).
#[tokio::test]
async fn an_upstream_password_is_never_quoted_by_check_or_a_reload() {
    let secret = "http://scanner:hunter2@127.0.0.1:9/?key=s3cret";
    let dir = ConfigDir::new(&Cfg::new(secret, &[Tok::new("a", "Token-A-1", true)]));
    let run = scangate(&dir.path, &["check"]);
    let p = dir.path.display();
    let expected = format!(
        "scangate check: {p}:17:16: GatewaySettings/Upstreams/Upstream[1]: upstream \
         \"http://***@127.0.0.1:9/…\" must not hold a user name or password\n\
         scangate check: {p}: 1 error\n"
    );
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (Some(1), "", expected.as_str())
    );

    let good = Cfg::new("http://127.0.0.1:9", &[Tok::new("a", "Token-A-1", true)]);
    let dir = ConfigDir::new(&good);
    let gw = scangate::state::Gateway::start(&dir.path).unwrap();
    for bad in [secret, "http://127.0.0.1:9/scan?key=s3cret"] {
        let mut cfg = good.clone();
        cfg.upstreams = vec![bad.to_owned()];
        write_atomic(&dir.path, &cfg.xml());
        let error = gw.reload().unwrap_err().to_string();
        let shown = gw.last_reload().error.unwrap();
        assert_eq!(shown, error);
        assert!(error.contains("upstream \"http://"), "{error}");
        for leaked in ["hunter2", "scanner:", "s3cret", ":9/scan"] {
            assert!(!error.contains(leaked), "{leaked} in {error}");
        }
    }
}

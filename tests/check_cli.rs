//! `scangate check` with the built binary: every invalid fixture fails with exit 1 and exactly the
//! validator's errors (whose wording `config_fixtures` pins down), a valid file passes with its token
//! counts, and the key file is checked as `serve` would need it.

mod common;

use std::path::Path;

use common::*;
use scangate::config::validate;

/// Writes a key file with `mode`.
fn write_key(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

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
fn the_deprecated_max_upstream_connections_passes_with_a_warning() {
    let mut cfg = Cfg::new("http://127.0.0.1:9", &[Tok::new("a", "Token-A-1", true)]);
    cfg.gateway_extra = "<MaxUpstreamConnections>4</MaxUpstreamConnections>".into();
    let dir = ConfigDir::new(&cfg);
    let run = scangate(&dir.path, &["check"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "scangate check: warning: GatewaySettings/MaxUpstreamConnections is deprecated: it sets \
         the per-engine session cap, which is now GatewaySettings/UpstreamSettings/MaxSessions \
         (default 10); MaxSessions wins when both are present\n"
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
    write_key(&key, "short\n", 0o600);
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

#[test]
fn a_key_file_others_may_read_fails_and_group_write_or_the_demo_key_warns() {
    use std::os::unix::fs::MetadataExt;
    let cfg = Cfg::new("http://127.0.0.1:9", &[Tok::new("a", "Token-A-1", true)]);
    let dir = ConfigDir::new(&cfg);
    let (p, key) = (dir.path.display(), dir.dir.path().join("scangate.key"));
    let k = key.display();
    let valid = format!("{p}: valid; tokens: 1 enabled, 0 disabled\n");
    let run = scangate(&dir.path, &["check"]);
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (Some(0), valid.as_str(), "")
    );

    write_key(&key, &(base64_key() + "\n"), 0o644);
    let run = scangate(&dir.path, &["check"]);
    let others = format!(
        "scangate check: {k}: token key file is readable or writable by others (mode 0644); run \
         chmod o-rwx on it\nscangate check: {p}: 1 error\n"
    );
    let summary = format!("{p}: config valid; tokens: 1 enabled, 0 disabled\n");
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (Some(1), summary.as_str(), others.as_str())
    );

    write_key(&key, &(base64_key() + "\n"), 0o660);
    let gid = std::fs::metadata(&key).unwrap().gid();
    let run = scangate(&dir.path, &["check"]);
    let group = format!(
        "scangate check: warning: {k}: token key file is writable by group {gid} (mode 0660), so \
         any member can replace the key; run chmod g-w on it\n"
    );
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (Some(0), valid.as_str(), group.as_str())
    );

    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/config/scangate.key");
    write_key(&key, &std::fs::read_to_string(demo).unwrap(), 0o600);
    let run = scangate(&dir.path, &["check"]);
    let demo = format!(
        "scangate check: warning: {k}: THIS IS THE PUBLIC DOCKER DEMO KEY, published with a demo \
         token: anyone can compute Values with it; write a new key and rotate every token before \
         real use\n"
    );
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (Some(0), valid.as_str(), demo.as_str())
    );
}

#[test]
fn a_key_file_the_gateway_user_cannot_read_fails_with_its_path() {
    use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
    let (svc, group) = (12345u32, 23456u32);
    let probe = tempfile::tempfile().unwrap();
    if probe.metadata().unwrap().uid() != 0 {
        eprintln!("SKIPPED: giving files to uid {svc} needs root");
        return;
    }
    let cfg = Cfg::new("http://127.0.0.1:9", &[Tok::new("a", "Token-A-1", true)]);
    let dir = ConfigDir::new(&cfg);
    let (p, key) = (dir.path.display(), dir.dir.path().join("scangate.key"));
    let k = key.display();
    let set = |path: &Path, uid: u32, gid: u32, mode: u32| {
        chown(path, Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let summary = format!("{p}: config valid; tokens: 1 enabled, 0 disabled\n");
    let failed = |error: String| {
        let run = scangate(&dir.path, &["check"]);
        let stderr = format!("scangate check: {error}\nscangate check: {p}: 1 error\n");
        assert_eq!(
            (run.code, run.stdout.as_str(), run.stderr.as_str()),
            (Some(1), summary.as_str(), stderr.as_str())
        );
    };

    // root shares the config with the gateway's group, but not the key (as `token add` made it
    // before it learned to).
    set(&dir.path, 0, group, 0o640);
    set(&key, 0, 0, 0o600);
    failed(format!(
        "{k}: the gateway presumably runs in group {group}, which may read the root-owned config, \
         and that group cannot read this file (owner 0:0, mode 0600); run chgrp {group} {k} && chmod g+r \
         {k}"
    ));
    set(&key, 0, group, 0o640);
    assert_eq!(scangate(&dir.path, &["check"]).code, Some(0));

    // The service user owns the config, root the key.
    set(&dir.path, svc, svc, 0o600);
    set(&key, 0, 0, 0o600);
    failed(format!(
        "{k}: the gateway presumably runs as uid {svc}, the config's owner, and that user cannot \
         read this file (owner 0:0, mode 0600)"
    ));
    set(&key, 0, svc, 0o640);
    assert_eq!(scangate(&dir.path, &["check"]).code, Some(0));
    // A config only root reads: the gateway runs as root, which reads anything.
    set(&dir.path, 0, 0, 0o600);
    set(&key, 0, 0, 0o600);
    assert_eq!(scangate(&dir.path, &["check"]).code, Some(0));
}

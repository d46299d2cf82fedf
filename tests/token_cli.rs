//! `scangate token …` end to end with the built binary: the round trip, byte-for-byte preservation,
//! a running gateway picking up added and rotated tokens, concurrent adds, and every refusal leaving
//! the file as it was.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use scangate::auth::token::encode_value;
use scangate::config::{load, Settings};
use serde_json::json;

fn settings(config: &Path) -> Settings {
    load::read_settings(config).unwrap().1
}

fn read(config: &Path) -> String {
    std::fs::read_to_string(config).unwrap()
}

/// A folder with a valid config holding one enabled token, `seed`.
fn seeded() -> ConfigDir {
    let cfg = Cfg::new(
        "http://127.0.0.1:9",
        &[Tok::new("seed", "Seed-Token-1", true)],
    );
    ConfigDir::new(&cfg)
}

/// The one line a token command printed on stdout.
fn printed_token(run: &Run) -> String {
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let token = run.stdout.strip_suffix('\n').expect("one line").to_owned();
    assert!(!token.contains('\n'), "stdout holds more than the token");
    assert!(!run.stderr.contains(&token), "token on stderr");
    token
}

#[test]
fn round_trip_add_list_disable_enable_rotate_remove() {
    let dir = seeded();
    let p = &dir.path;
    let add = scangate(
        p,
        &[
            "token",
            "add",
            "--name",
            "ci",
            "--description",
            "CI runner",
            "--role",
            "SecurityOfficer",
            "--tenant",
            "acme",
        ],
    );
    let token = printed_token(&add);
    assert!(token.starts_with("sg_") && token.len() == 47, "{token}");
    assert!(token[3..].bytes().all(|b| b.is_ascii_alphanumeric()));
    let added = format!("added token \"ci\" (enabled) to {}\n", p.display());
    assert_eq!(add.stderr, added);
    assert!(!read(p).contains(&token), "the token itself is in the file");

    let ci = |p: &Path| settings(p).auth.tokens.into_iter().find(|t| t.name == "ci");
    let entry = ci(p).unwrap();
    assert_eq!(entry.digest, key().digest(token.as_bytes()));
    assert_eq!(entry.description.as_deref(), Some("CI runner"));
    assert!(entry.enabled);
    assert_eq!(entry.tenants, ["acme"]);
    let listed = |enabled: bool, fingerprint: &str| {
        json!({
            "name": "ci", "enabled": enabled, "description": "CI runner",
            "role": "SecurityOfficer", "tenants": ["acme"], "fingerprint": fingerprint,
            "limits": "-",
        })
    };
    let fingerprint = &encode_value(&entry.digest)[..8];
    let list = list_json(p);
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["name"], "seed");
    assert_eq!(list[1], listed(true, fingerprint));
    let table = scangate(p, &["token", "list"]);
    assert_eq!(table.code, Some(0));
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME  "), "{}", table.stdout);
    assert!(lines[2].starts_with("ci "), "{}", table.stdout);
    assert!(lines[2].contains(fingerprint) && !table.stdout.contains(&token));

    let disable = scangate(p, &["token", "disable", "ci"]);
    assert_eq!((disable.code, disable.stdout.as_str()), (Some(0), ""));
    assert_eq!(disable.stderr, "disabled token \"ci\"\n");
    assert!(!ci(p).unwrap().enabled);
    assert_eq!(list_json(p)[1], listed(false, fingerprint));

    let enable = scangate(p, &["token", "enable", "ci"]);
    assert_eq!(
        (enable.code, enable.stderr.as_str()),
        (Some(0), "enabled token \"ci\"\n")
    );
    assert!(ci(p).unwrap().enabled);
    assert_eq!(list_json(p)[1], listed(true, fingerprint));

    let rotate = scangate(p, &["token", "rotate", "ci"]);
    let new = printed_token(&rotate);
    assert_ne!(new, token);
    let rotated = ci(p).unwrap();
    assert_eq!(rotated.digest, key().digest(new.as_bytes()));
    assert_eq!(
        (rotated.role, &rotated.tenants, &rotated.description),
        (entry.role, &entry.tenants, &entry.description)
    );
    let new_fingerprint = &encode_value(&rotated.digest)[..8];
    assert_ne!(new_fingerprint, fingerprint);
    assert_eq!(list_json(p)[1], listed(true, new_fingerprint));

    let remove = scangate(p, &["token", "remove", "ci"]);
    assert_eq!(
        (remove.code, remove.stderr.as_str()),
        (Some(0), "removed token \"ci\"\n")
    );
    assert!(ci(p).is_none());
    assert!(!read(p).contains("<Name>ci</Name>"));
    let names: Vec<_> = list_json(p).iter().map(|t| t["name"].clone()).collect();
    assert_eq!(names, [json!("seed")]);
}

#[test]
fn edits_keep_every_byte_outside_the_changed_tokens() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/edit");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("scangate.xml");
    std::fs::copy(fixtures.join("preserve.xml"), &p).unwrap();
    std::fs::copy(
        fixtures.join("scangate.key"),
        dir.path().join("scangate.key"),
    )
    .unwrap();
    let steps: &[&[&str]] = &[
        &[
            "token",
            "add",
            "--name",
            "new",
            "--token",
            "Fixed-Token-1",
            "--role",
            "SecurityOfficer",
            "--tenant",
            "acme",
        ],
        &["token", "disable", "soc"],
        &["token", "describe", "ci", "--description", "CI & nightly"],
        &["token", "rotate", "legacy", "--token", "Rotated-Token-2"],
        &["token", "remove", "mail & relay"],
    ];
    for step in steps {
        let run = scangate(&p, step);
        assert_eq!(run.code, Some(0), "{step:?}: {}", run.stderr);
    }
    let got = read(&p);
    let expected = std::fs::read_to_string(fixtures.join("preserve.expected.xml")).unwrap();
    if got != expected {
        let first = got.lines().zip(expected.lines()).position(|(a, b)| a != b);
        panic!("differs from preserve.expected.xml from line {first:?} on:\n{got}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_gateway_accepts_added_tokens_and_drops_rotated_ones() {
    let up = Upstream::start(Behaviour::Ok).await;
    let cfg = Cfg::new(&up.url(), &[Tok::new("seed", "Seed-Token-1", true)]);
    let gw = TestGateway::start_in(ConfigDir::new(&cfg), true).await;
    let (c, url) = (client(), gw.url("/api/v3.0/version"));
    let path = gw.config.path.clone();
    let run = move |args: &'static [&'static str]| {
        let path = path.clone();
        tokio::task::spawn_blocking(move || scangate(&path, args))
    };
    let generation = gw.gw.generation();

    let token = printed_token(&run(&["token", "add", "--name", "ci"]).await.unwrap());
    let accepted = eventually(Duration::from_secs(10), || async {
        status_with(&c, &url, &token).await == 200
    });
    assert!(accepted.await, "added token never accepted");
    assert!(gw.gw.generation() > generation, "no reload happened");

    let new = printed_token(&run(&["token", "rotate", "ci"]).await.unwrap());
    let swapped = eventually(Duration::from_secs(10), || async {
        status_with(&c, &url, &new).await == 200
    });
    assert!(swapped.await, "rotated token never accepted");
    assert_eq!(status_with(&c, &url, &token).await, 401);
    assert_eq!(status_with(&c, &url, "Seed-Token-1").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlinked_config_is_edited_at_its_target_and_still_reloads() {
    let up = Upstream::start(Behaviour::Ok).await;
    let cfg = Cfg::new(&up.url(), &[Tok::new("seed", "Seed-Token-1", true)]);
    let target = ConfigDir::new(&cfg);
    // The link lives in another folder, with the key: relative paths resolve against the link's
    // folder, as `serve` resolves them.
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("scangate.xml");
    std::os::unix::fs::symlink(&target.path, &link).unwrap();
    let key = target.dir.path().join("scangate.key");
    std::fs::copy(&key, dir.path().join("scangate.key")).unwrap();
    let gw = TestGateway::start_in(
        ConfigDir {
            dir,
            path: link.clone(),
        },
        true,
    )
    .await;

    let add = link.clone();
    let added =
        tokio::task::spawn_blocking(move || scangate(&add, &["token", "add", "--name", "ci"]));
    let token = printed_token(&added.await.unwrap());
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(read(&target.path).contains("<Name>ci</Name>"));
    let (c, url) = (client(), gw.url("/api/v3.0/version"));
    let accepted = eventually(Duration::from_secs(10), || async {
        status_with(&c, &url, &token).await == 200
    });
    assert!(
        accepted.await,
        "the edit at the link's target was not picked up"
    );
}

#[test]
fn twenty_parallel_adds_all_land() {
    let dir = seeded();
    let names: Vec<String> = (0..20).map(|i| format!("parallel-{i:02}")).collect();
    let children: Vec<_> = (names.iter())
        .map(|name| {
            let mut cmd = command(&dir.path, &["token", "add", "--name", name]);
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let tokens: Vec<String> = (children.into_iter())
        .map(|child| printed_token(&finished(child.wait_with_output().unwrap())))
        .collect();

    let s = settings(&dir.path);
    assert_eq!(s.auth.tokens.len(), 21);
    let mut listed: Vec<String> = (s.auth.tokens.iter().skip(1))
        .map(|t| t.name.to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, names);
    for (name, token) in names.iter().zip(&tokens) {
        let entry = s.auth.tokens.iter().find(|t| t.name == *name).unwrap();
        assert_eq!(entry.digest, key().digest(token.as_bytes()), "{name}");
    }
    let check = scangate(&dir.path, &["check"]);
    assert_eq!(check.code, Some(0), "{}", check.stderr);
}

/// Runs `scangate ARGS --config CONFIG` with `input` on stdin.
fn scangate_stdin(config: &Path, args: &[&str], input: &str) -> Run {
    use std::io::Write as _;
    let mut cmd = command(config, args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // A command that fails before reading closes the pipe: a failed write is fine then.
    let _ = stdin.write_all(input.as_bytes());
    drop(stdin);
    finished(child.wait_with_output().unwrap())
}

/// Runs a command that must be refused: exit `code`, nothing on stdout, exactly `stderr`, and the
/// config byte for byte as before.
fn refused(dir: &ConfigDir, args: &[&str], code: i32, stderr: &str) {
    refused_stdin(dir, args, "", code, stderr);
}

/// [`refused`], with `input` on stdin.
fn refused_stdin(dir: &ConfigDir, args: &[&str], input: &str, code: i32, stderr: &str) {
    let before = read(&dir.path);
    let run = scangate_stdin(&dir.path, args, input);
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (Some(code), "", stderr),
        "{args:?}"
    );
    assert_eq!(read(&dir.path), before, "{args:?} changed the file");
}

#[test]
fn taken_names_unknown_names_and_repeated_tokens_are_refused() {
    let dir = seeded();
    let add = |name: &'static str| ["token", "add", "--name", name];
    refused(
        &dir,
        &add("seed"),
        64,
        "scangate token: a token named \"seed\" already exists\n",
    );
    let same = ["token", "add", "--name", "again", "--token", "-"];
    let taken = "scangate token: that token is already in the file, as \"seed\"\n";
    refused_stdin(&dir, &same, "Seed-Token-1\n", 64, taken);
    let rotate_same = ["token", "rotate", "seed", "--token", "-"];
    refused_stdin(&dir, &rotate_same, "Seed-Token-1\n", 64, taken);
    for verb in ["enable", "disable", "remove", "rotate"] {
        refused(
            &dir,
            &["token", verb, "ghost"],
            64,
            "scangate token: no token named \"ghost\"\n",
        );
    }
    let long = "n".repeat(41);
    let rule = "scangate token: --name: Name must be 1 to 40 characters, found 41\n";
    refused(&dir, &["token", "add", "--name", &long], 64, rule);
    // The last token cannot go while UseAccessToken is 1: the result would be invalid.
    let p = dir.path.display();
    let invalid = format!(
        "scangate token: not written: {p}:11:7: ServerSettings/AuthSettings/AccessTokens: \
         UseAccessToken is 1 but AccessTokens has no Token\n"
    );
    refused(&dir, &["token", "remove", "seed"], 1, &invalid);
}

#[test]
fn bad_supplied_tokens_are_refused_without_being_echoed() {
    let dir = seeded();
    let cases = [
        ("Ab1", "a token must be 4 to 100 ASCII characters"),
        ("lower-case-1", "a token needs an upper-case letter, a lower-case letter, a digit and one of - . _ ~ + /"),
        ("Päss-word-1", "a token must be printable ASCII"),
    ];
    for (token, rule) in cases {
        let stderr = format!("scangate token: --token: {rule}\n");
        let input = format!("{token}\n");
        let add = ["token", "add", "--name", "x", "--token", "-"];
        refused_stdin(&dir, &add, &input, 64, &stderr);
        let rotate = ["token", "rotate", "seed", "--token", "-"];
        refused_stdin(&dir, &rotate, &input, 64, &stderr);
    }
    let nothing = "scangate token: --token -: no token on stdin\n";
    for input in ["", "\n", "\r\n"] {
        refused_stdin(
            &dir,
            &["token", "add", "--name", "x", "--token", "-"],
            input,
            64,
            nothing,
        );
        refused_stdin(
            &dir,
            &["token", "rotate", "seed", "--token", "-"],
            input,
            64,
            nothing,
        );
    }
}

#[test]
fn token_dash_reads_the_token_from_stdin_and_a_token_in_argv_warns() {
    let dir = seeded();
    let p = dir.path.display();
    // One line; CRLF and anything after the first line are not part of it.
    let add = scangate_stdin(
        &dir.path,
        &["token", "add", "--name", "piped", "--token", "-"],
        "Piped-Token-1\r\nsecond line\n",
    );
    assert_eq!(printed_token(&add), "Piped-Token-1");
    assert_eq!(
        add.stderr,
        format!("added token \"piped\" (enabled) to {p}\n")
    );
    let digest = |name: &str| {
        let tokens = settings(&dir.path).auth.tokens;
        tokens.into_iter().find(|t| t.name == name).unwrap().digest
    };
    assert_eq!(digest("piped"), key().digest(b"Piped-Token-1"));
    let rotate = scangate_stdin(
        &dir.path,
        &["token", "rotate", "piped", "--token", "-"],
        "Rotated-Token-2",
    );
    assert_eq!(printed_token(&rotate), "Rotated-Token-2");
    assert_eq!(digest("piped"), key().digest(b"Rotated-Token-2"));

    let warning = "warning: --token VALUE shows the token to every local user (ps, /proc) and \
                   leaves it in shell history; use --token - and write it on stdin\n";
    let argv = scangate(
        &dir.path,
        &["token", "add", "--name", "argv", "--token", "Argv-Token-3"],
    );
    assert_eq!(printed_token(&argv), "Argv-Token-3");
    assert_eq!(
        argv.stderr,
        format!("{warning}added token \"argv\" (enabled) to {p}\n")
    );
    let rotate = scangate(
        &dir.path,
        &["token", "rotate", "argv", "--token", "Argv-Token-4"],
    );
    assert_eq!(printed_token(&rotate), "Argv-Token-4");
    assert!(rotate.stderr.starts_with(warning), "{}", rotate.stderr);
}

#[test]
fn a_supplied_token_may_start_with_a_hyphen() {
    let dir = seeded();
    let add = scangate(
        &dir.path,
        &["token", "add", "--name", "dash", "--token", "-Dash-1x"],
    );
    assert_eq!(printed_token(&add), "-Dash-1x");
    let entry = settings(&dir.path).auth.tokens.pop().unwrap();
    assert_eq!(entry.digest, key().digest(b"-Dash-1x"));
    let padded = ["token", "add", "--name", " padded", "--token", "Padded-1x"];
    let rule = "scangate token: --name: Name must not start or end with whitespace\n";
    refused(&dir, &padded, 64, rule);
}

#[test]
fn an_unreadable_or_missing_key_file_is_refused() {
    let dir = seeded();
    let key = dir.dir.path().join("scangate.key");
    std::fs::remove_file(&key).unwrap();
    let k = key.display();
    let missing = format!(
        "scangate token: {k}: token key file is missing, but the config already holds 1 token(s) hashed \
         with a key; restore that key file rather than create a new one\n"
    );
    refused(&dir, &["token", "add", "--name", "x"], 1, &missing);
    assert!(!key.exists(), "a key file was created");

    std::fs::create_dir(&key).unwrap();
    let unreadable =
        format!("scangate token: {k}: cannot read token key file: Is a directory (os error 21)\n");
    refused(&dir, &["token", "add", "--name", "x"], 1, &unreadable);
    refused(&dir, &["token", "rotate", "seed"], 1, &unreadable);

    std::fs::remove_dir(&key).unwrap();
    std::fs::write(&key, "not a key\n").unwrap();
    let malformed = format!(
        "scangate token: {k}: token key file must hold one line: the standard base64 of 32 random bytes\n"
    );
    refused(&dir, &["token", "add", "--name", "x"], 1, &malformed);
}

#[test]
fn a_read_only_folder_is_refused() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;

    let root = tempfile::tempdir().unwrap();
    let mode = |path: &Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    mode(root.path(), 0o755);
    let folder = root.path().join("ro");
    std::fs::create_dir(&folder).unwrap();
    let p = folder.join("scangate.xml");
    let cfg = Cfg::new(
        "http://127.0.0.1:9",
        &[Tok::new("seed", "Seed-Token-1", true)],
    );
    std::fs::write(&p, cfg.xml()).unwrap();
    std::fs::write(folder.join("scangate.key"), base64_key() + "\n").unwrap();
    mode(&folder.join("scangate.key"), 0o644);
    // root writes anywhere; run the commands as nobody then.
    let as_root = std::fs::metadata(&p).unwrap().uid() == 0;
    let run = |args: &[&str]| {
        let mut cmd = command(&p, args);
        if as_root {
            cmd.uid(65534).gid(65534);
        }
        finished(cmd.output().unwrap())
    };
    let before = read(&p);
    let real = std::fs::canonicalize(&folder).unwrap();

    mode(&folder, 0o555);
    let add = run(&["token", "add", "--name", "x"]);
    let lock = format!(
        "scangate token: {}: cannot lock: Permission denied (os error 13)\n",
        real.join("scangate.xml.lock").display()
    );
    assert_eq!(
        (add.code, add.stdout.as_str(), add.stderr.as_str()),
        (Some(1), "", lock.as_str())
    );

    // With the lock file already there, the temp file is what cannot be made.
    mode(&folder, 0o755);
    std::fs::write(folder.join("scangate.xml.lock"), "").unwrap();
    mode(&folder, 0o555);
    let disable = run(&["token", "disable", "seed"]);
    let write = format!(
        "scangate token: {}: cannot write: Permission denied (os error 13)\n",
        real.display()
    );
    let got = (
        disable.code,
        disable.stdout.as_str(),
        disable.stderr.as_str(),
    );
    assert_eq!(got, (Some(1), "", write.as_str()));
    mode(&folder, 0o755);

    assert_eq!(read(&p), before);
    let mut left: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["scangate.key", "scangate.xml", "scangate.xml.lock"]);
}

#[test]
fn add_creates_a_0600_key_file_and_the_config_comes_from_the_environment() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    // A fresh folder: no key, no token, UseAccessToken 0, a config only its owner reads.
    let fresh = tempfile::tempdir().unwrap();
    let p = fresh.path().join("scangate.xml");
    let mut cfg = Cfg::new("http://127.0.0.1:9", &[]);
    cfg.use_access_token = false;
    std::fs::write(&p, cfg.xml()).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    let owner = std::fs::metadata(&p).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_scangate"));
    cmd.args(["token", "add", "--name", "first"])
        .env("SCANGATE_CONFIG", &p);
    let add = finished(cmd.output().unwrap());
    let token = printed_token(&add);
    let key = fresh.path().join("scangate.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let k = scangate::auth::token::TokenKey::read(&key).unwrap();
    assert_eq!(
        settings(&p).auth.tokens[0].digest,
        k.digest(token.as_bytes())
    );
    assert_eq!(
        add.stderr,
        format!(
            "created token key file {} (mode 0600, owner {}:{})\nadded token \"first\" (enabled) \
             to {p}\nnote: UseAccessToken is 0 in {p}: no request is checked until it is 1\n",
            key.display(),
            owner.uid(),
            owner.gid(),
            p = p.display()
        )
    );
}

#[test]
fn usage_errors_exit_64_and_help_exits_0() {
    let dir = seeded();
    let mut bare = std::process::Command::new(env!("CARGO_BIN_EXE_scangate"));
    bare.args(["token", "list"]).env_remove("SCANGATE_CONFIG");
    let run = finished(bare.output().unwrap());
    assert_eq!(run.code, Some(64));
    assert_eq!(
        run.stderr,
        "scangate token: no config file: pass --config PATH or set SCANGATE_CONFIG\n"
    );
    for args in [
        &["token", "add"][..],
        &["token", "frobnicate"],
        &["token", "add", "--name", "x", "--role", "Boss"],
    ] {
        assert_eq!(scangate(&dir.path, args).code, Some(64), "{args:?}");
    }
    let help = scangate(&dir.path, &["token", "add", "--help"]);
    assert_eq!(help.code, Some(0));
    assert!(help.stdout.contains("--tenant <TENANT>"), "{}", help.stdout);
}

#[test]
fn tenants_with_commas_and_text_with_control_characters_are_refused() {
    let dir = seeded();
    let add =
        |flag: &'static str, value: &'static str| vec!["token", "add", "--name", "x", flag, value];
    let cases: [(Vec<&str>, &str); 5] = [
        (
            add("--tenant", "acme,globex"),
            "--tenant: Tenant must not contain a comma: X-Scangate-Tenants separates tenants with commas",
        ),
        (
            add("--tenant", " acme"),
            "--tenant: Tenant must not start or end with whitespace",
        ),
        (
            add("--description", "\u{1b}[2Jgone"),
            "--description: Description must not contain control characters other than tab",
        ),
        (
            vec!["token", "add", "--name", "ci\u{202e}lanretni"],
            "--name: Name must not contain bidirectional control characters",
        ),
        (
            vec!["token", "describe", "seed", "--description", "a\nb"],
            "--description: Description must not contain control characters other than tab",
        ),
    ];
    for (args, rule) in cases {
        refused(&dir, &args, 64, &format!("scangate token: {rule}\n"));
    }
}

/// The operator these tests switch to, and the gateway's group it may belong to.
const OPERATOR: u32 = 12345;
const GATEWAY_GROUP: u32 = 23456;

/// Runs `scangate ARGS --config CONFIG` as uid and gid [`OPERATOR`] with `groups` as its
/// supplementary groups, through util-linux's `setpriv`. `None`, after saying why, when this test
/// cannot switch users (it is not root, or there is no setpriv).
fn as_operator(config: &Path, args: &[&str], groups: &[u32]) -> Option<Run> {
    let mut cmd = std::process::Command::new("setpriv");
    cmd.arg(format!("--reuid={OPERATOR}"))
        .arg(format!("--regid={OPERATOR}"));
    match groups {
        [] => cmd.arg("--clear-groups"),
        _ => {
            let list: Vec<String> = groups.iter().map(u32::to_string).collect();
            cmd.arg(format!("--groups={}", list.join(",")))
        }
    };
    cmd.arg("--")
        .arg(env!("CARGO_BIN_EXE_scangate"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("SCANGATE_CONFIG")
        .env_remove("RUST_LOG");
    match cmd.output() {
        Ok(out) => Some(finished(out)),
        Err(e) => {
            eprintln!("SKIPPED: cannot run setpriv: {e}");
            None
        }
    }
}

/// A config folder shared the usual way: `root` (mode 0755) / `etc` (owner:group `folder`, mode
/// 0770) holding the seeded config and its key with the owners and modes given.
fn shared(folder: (u32, u32), config: (u32, u32, u32), key: (u32, u32, u32)) -> ConfigDir {
    let dir = shared_fresh(folder, config);
    let key_path = dir.path.with_file_name("scangate.key");
    std::fs::write(&key_path, base64_key() + "\n").unwrap();
    set_access(&key_path, key);
    let mut cfg = Cfg::new(
        "http://127.0.0.1:9",
        &[Tok::new("seed", "Seed-Token-1", true)],
    );
    cfg.use_access_token = true;
    std::fs::write(&dir.path, cfg.xml()).unwrap();
    dir
}

/// Like [`shared`], with a config that holds no token (UseAccessToken 0) and no key file.
fn shared_fresh(folder: (u32, u32), config: (u32, u32, u32)) -> ConfigDir {
    let dir = tempfile::tempdir().unwrap();
    set_access(dir.path(), (0, 0, 0o755));
    let etc = dir.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    set_access(&etc, (folder.0, folder.1, 0o770));
    let path = etc.join("scangate.xml");
    let mut cfg = Cfg::new("http://127.0.0.1:9", &[]);
    cfg.use_access_token = false;
    std::fs::write(&path, cfg.xml()).unwrap();
    set_access(&path, config);
    ConfigDir { dir, path }
}

fn set_access(path: &Path, (uid, gid, mode): (u32, u32, u32)) {
    use std::os::unix::fs::{chown, PermissionsExt};
    chown(path, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Whether this test may chown files and switch users; says why not when it may not.
fn root() -> bool {
    use std::os::unix::fs::MetadataExt;
    let probe = tempfile::tempfile().unwrap();
    let root = probe.metadata().unwrap().uid() == 0;
    if !root {
        eprintln!("SKIPPED: sharing files with uid {OPERATOR} needs root");
    }
    root
}

fn access(path: &Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).unwrap();
    (meta.uid(), meta.gid(), meta.mode() & 0o7777)
}

#[test]
fn an_edit_by_a_member_of_the_gateway_group_keeps_the_file_readable_by_that_group() {
    let g = GATEWAY_GROUP;
    if !root() {
        return;
    }
    let dir = shared((0, g), (0, g, 0o660), (0, g, 0o640));
    let Some(disable) = as_operator(&dir.path, &["token", "disable", "seed"], &[g]) else {
        return;
    };
    assert_eq!(
        (
            disable.code,
            disable.stdout.as_str(),
            disable.stderr.as_str()
        ),
        (Some(0), "", "disabled token \"seed\"\n")
    );
    assert!(!settings(&dir.path).auth.tokens[0].enabled);
    // Only root could give it back to root; the group and mode are as before.
    assert_eq!(access(&dir.path), (OPERATOR, g, 0o660));

    let add = as_operator(&dir.path, &["token", "add", "--name", "ci"], &[g]).unwrap();
    printed_token(&add);
    assert_eq!(access(&dir.path), (OPERATOR, g, 0o660));
}

#[test]
fn an_edit_that_would_shut_out_the_gateway_group_is_refused() {
    let (op, g) = (OPERATOR, GATEWAY_GROUP);
    // The operator owns the file but, in this session, is not in the gateway's group (a container
    // run with --user uid:gid has no supplementary groups), so it cannot hand the group back.
    if !root() {
        return;
    }
    let dir = shared((op, g), (op, g, 0o640), (op, g, 0o640));
    let before = read(&dir.path);
    let Some(disable) = as_operator(&dir.path, &["token", "disable", "seed"], &[]) else {
        return;
    };
    let real = std::fs::canonicalize(&dir.path).unwrap();
    let refusal = format!(
        "scangate token: {}: not written: group {g} can read it now but not the new file, which \
         would belong to uid {op} and gid {op}; run the command as root or as a member of group \
         {g}\n",
        real.display()
    );
    assert_eq!(
        (
            disable.code,
            disable.stdout.as_str(),
            disable.stderr.as_str()
        ),
        (Some(1), "", refusal.as_str())
    );
    assert_eq!(read(&dir.path), before);
    assert_eq!(access(&dir.path), (op, g, 0o640));
    let folder = dir.path.parent().unwrap();
    let mut left: Vec<_> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["scangate.key", "scangate.xml", "scangate.xml.lock"]);
}

#[test]
fn a_key_created_for_a_shared_config_gets_its_group_and_mode_0640() {
    let (op, g) = (OPERATOR, GATEWAY_GROUP);
    if !root() {
        return;
    }
    // root adds the first token: the key is root's, in the config's group, readable by it.
    let dir = shared_fresh((0, g), (0, g, 0o640));
    let key = dir.path.with_file_name("scangate.key");
    let add = scangate(&dir.path, &["token", "add", "--name", "first"]);
    printed_token(&add);
    assert_eq!(access(&key), (0, g, 0o640));
    let created = format!(
        "created token key file {} (mode 0640, owner 0:{g})\n",
        key.display()
    );
    assert!(add.stderr.starts_with(&created), "{}", add.stderr);
    // A service user in that group reads both files.
    let Some(check) = as_operator(&dir.path, &["check"], &[g]) else {
        return;
    };
    assert_eq!((check.code, check.stderr.as_str()), (Some(0), ""));

    // A member of the group adds the first token: the key is the member's, in the group.
    let dir = shared_fresh((0, g), (0, g, 0o660));
    let key = dir.path.with_file_name("scangate.key");
    let add = as_operator(&dir.path, &["token", "add", "--name", "first"], &[g]).unwrap();
    printed_token(&add);
    assert_eq!(access(&key), (op, g, 0o640));

    // An owner outside the config's group cannot give the files that group. Where the group
    // reads the config as others do, the edit goes ahead and says what to run for the key.
    let dir = shared_fresh((op, g), (op, g, 0o640));
    let key = dir.path.with_file_name("scangate.key");
    let add = as_operator(&dir.path, &["token", "add", "--name", "first"], &[]).unwrap();
    assert_eq!(add.code, Some(1), "{}", add.stderr);
    assert!(!key.exists(), "a refused add left its key behind");
    set_access(&dir.path, (op, g, 0o644));
    let add = as_operator(&dir.path, &["token", "add", "--name", "first"], &[]).unwrap();
    printed_token(&add);
    assert_eq!(access(&key), (op, op, 0o600));
    let k = key.display();
    let note = format!(
        "created token key file {k} (mode 0600, owner {op}:{op})\nnote: group {g} may read the \
         config but not the key; for a gateway running in that group, run: chgrp {g} {k} && \
         chmod 0640 {k}\n"
    );
    assert!(add.stderr.starts_with(&note), "{}", add.stderr);
}

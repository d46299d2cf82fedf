//! `scangate connection …` end to end with the built binary against an in-process gateway: add,
//! the printed refresh token exchanged at session/confirm, list, disable, enable, revoke and
//! refresh as a client sees them, every refusal with its exact words, and the token never in a file
//! or on stderr.

mod common;

use std::path::Path;

use common::*;
use scangate::config::validate::connections::{format_time, now_secs, parse_time};
use serde_json::{json, Value};

/// A comment placed by an operator: every edit must keep it.
const COMMENT: &str = "<!-- connections for the SOC; ask before changing -->";

fn read(config: &Path) -> String {
    std::fs::read_to_string(config).unwrap()
}

/// A config with the static token `ci` and an operator's comment, and its key file.
fn seeded(upstream: &str) -> ConfigDir {
    let cfg = Cfg::new(upstream, &[Tok::new("ci", "Ci-Token-1", true)]);
    let dir = ConfigDir::new(&cfg);
    let text = cfg.xml().replacen(
        "      <AccessTokens>",
        &format!("      {COMMENT}\n      <AccessTokens>"),
        1,
    );
    std::fs::write(&dir.path, text).unwrap();
    dir
}

/// The refresh token a command printed: alone on stdout, never on stderr or in the config.
fn printed(run: &Run, config: &Path) -> String {
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let token = run.stdout.strip_suffix('\n').expect("one line").to_owned();
    assert!(!token.contains('\n'), "stdout holds more than the token");
    assert!(
        token.starts_with("eyJ") && token.matches('.').count() == 2,
        "{token}"
    );
    assert!(!run.stderr.contains(&token), "token on stderr");
    assert!(!read(config).contains(&token), "token in the config");
    token
}

/// `connection list --json`, parsed; the one object, when there is one.
fn listed(config: &Path) -> Vec<Value> {
    let run = scangate(config, &["connection", "list", "--json"]);
    assert_eq!((run.code, run.stderr.as_str()), (Some(0), ""));
    serde_json::from_str(&run.stdout).unwrap()
}

/// Runs a connection command off the runtime's threads (it blocks on a child process).
async fn cli(config: &Path, args: &[&str]) -> Run {
    let (config, args): (std::path::PathBuf, Vec<String>) = (
        config.to_owned(),
        args.iter().map(|a| a.to_string()).collect(),
    );
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        scangate(&config, &args)
    })
    .await
    .unwrap()
}

async fn reload(gw: &TestGateway) {
    let worker = gw.gw.clone();
    tokio::task::spawn_blocking(move || worker.reload())
        .await
        .unwrap()
        .unwrap();
}

/// POSTs the exchange; the status and the JSON body.
async fn confirm(gw: &TestGateway, client_id: &str, refresh: &str) -> (u16, Value) {
    let r = client()
        .post(gw.url(&format!("/api/v1/{client_id}/session/confirm")))
        .header("content-type", "application/json")
        .body(json!({ "refresh_token": refresh }).to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A scan with `token`: the status.
async fn scan(gw: &TestGateway, token: &str) -> u16 {
    status_with(&client(), &gw.url("/api/v3.0/version"), token).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_exchange_disable_enable_revoke_refresh_against_a_running_gateway() {
    let up = Upstream::start(Behaviour::Ok).await;
    let gw = TestGateway::start_in(seeded(&up.url()), false).await;
    let p = gw.config.path.clone();
    let add = [
        "connection",
        "add",
        "--name",
        "siem",
        "--tenant",
        "acme",
        "--root-tenant",
        "--description",
        "SIEM collector",
    ];
    let run = cli(&p, &add).await;
    let first = printed(&run, &p);
    let rows = listed(&p);
    let id = rows[0]["client_id"].as_str().unwrap().to_owned();
    let row = |status: &str, last: Value, not_before: &Value| {
        json!([{
            "name": "siem", "client_id": id, "role": "SecurityOfficer", "tenants": ["acme"],
            "root_tenant": true, "description": "SIEM collector", "enabled": status != "disabled",
            "status": status, "last_exchange": last, "not_before": not_before, "limits": "-",
        }])
    };
    let not_before = rows[0]["not_before"].clone();
    assert_eq!(
        Value::from(rows),
        row("pending activation", Value::Null, &not_before)
    );
    let expires = parse_time(not_before.as_str().unwrap()).unwrap() + 86_400;
    assert_eq!(
        run.stderr,
        format!(
            "added connection \"siem\" (SecurityOfficer, tenants: acme,Root without tenants) to {}\n\
             client ID: {id}\n\
             the refresh token is shown once; exchange it before {} at POST /api/v1/{id}/session/confirm\n",
            p.display(),
            format_time(expires)
        )
    );

    // The gateway picks the connection up; the printed token exchanges once.
    reload(&gw).await;
    let (status, pair) = confirm(&gw, &id, &first).await;
    assert_eq!(status, 200, "{pair}");
    let access = pair["access_token"].as_str().unwrap().to_owned();
    let next = pair["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(scan(&gw, &access).await, 200);
    assert_eq!(up.seen()[0].headers["x-scangate-token-name"], "siem");
    let rows = listed(&p);
    assert_eq!(rows[0]["status"], "active");
    let last = parse_time(rows[0]["last_exchange"].as_str().unwrap()).unwrap();
    assert!(last.abs_diff(now_secs()) <= 5, "{last}");

    // Disabled: 401 at the next reload, and back when enabled (the family was never revoked).
    let run = cli(&p, &["connection", "disable", "siem"]).await;
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (
            Some(0),
            "",
            "disabled connection \"siem\": its tokens stop working when the gateway reloads\n"
        )
    );
    assert_eq!(
        Value::from(listed(&p)),
        row("disabled", rows[0]["last_exchange"].clone(), &not_before)
    );
    reload(&gw).await;
    assert_eq!(scan(&gw, &access).await, 401);
    let run = cli(&p, &["connection", "enable", "siem"]).await;
    assert_eq!(run.stderr, "enabled connection \"siem\"\n");
    reload(&gw).await;
    assert_eq!(scan(&gw, &access).await, 200);

    // Revoked: every token of every family dies, the refresh token of the exchange too.
    let run = cli(&p, &["connection", "revoke", "siem"]).await;
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (
            Some(0),
            "",
            "revoked connection \"siem\": its tokens stop working when the gateway reloads; \
             `scangate connection refresh siem` issues a new one\n"
        )
    );
    reload(&gw).await;
    assert_eq!(scan(&gw, &access).await, 401);
    assert_eq!(
        confirm(&gw, &id, &next).await,
        (400, json!({"error": "invalid_grant"}))
    );
    let rows = listed(&p);
    assert_eq!(
        (rows[0]["status"].as_str(), rows[0]["enabled"].as_bool()),
        (Some("revoked"), Some(true))
    );
    let run = cli(&p, &["connection", "enable", "siem"]).await;
    assert_eq!(
        run.stderr,
        "connection \"siem\" is already enabled; nothing to do\nnote: connection \"siem\" is \
         revoked: `scangate connection refresh siem` issues a new token\n"
    );

    // Refresh: a new token that exchanges, while the old families stay dead.
    let run = cli(&p, &["connection", "refresh", "siem"]).await;
    let fresh = printed(&run, &p);
    assert!(run.stderr.starts_with(
        "refreshed connection \"siem\": every token issued before stops working when the gateway \
         reloads\nclient ID: "
    ), "{}", run.stderr);
    assert_eq!(listed(&p)[0]["status"], "pending activation");
    reload(&gw).await;
    let (status, pair) = confirm(&gw, &id, &fresh).await;
    assert_eq!(status, 200, "{pair}");
    assert_eq!(scan(&gw, pair["access_token"].as_str().unwrap()).await, 200);
    assert_eq!(scan(&gw, &access).await, 401);
    assert_eq!(confirm(&gw, &id, &first).await.0, 400);
    assert_eq!(listed(&p)[0]["status"], "active");

    // Removed: gone from the list, its tokens refused, the comment and the static token kept.
    let run = cli(&p, &["connection", "remove", "siem"]).await;
    assert_eq!(
        run.stderr,
        "removed connection \"siem\": its tokens stop working when the gateway reloads\n"
    );
    reload(&gw).await;
    assert_eq!(scan(&gw, pair["access_token"].as_str().unwrap()).await, 401);
    assert_eq!(listed(&p), Vec::<Value>::new());
    let text = read(&p);
    assert!(text.contains(COMMENT), "{text}");
    assert_eq!(scan(&gw, "Ci-Token-1").await, 200);
    for token in [&first, &fresh, &access, &next] {
        assert!(!text.contains(token.as_str()));
    }
}

/// Runs a command that must be refused: exit `code`, nothing on stdout, exactly `stderr`, and the
/// config byte for byte as before.
fn refused(dir: &ConfigDir, args: &[&str], code: i32, stderr: &str) {
    let before = read(&dir.path);
    let run = scangate(&dir.path, args);
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (Some(code), "", stderr),
        "{args:?}"
    );
    assert_eq!(read(&dir.path), before, "{args:?} changed the file");
}

#[test]
fn bad_inputs_are_refused_with_their_exact_words() {
    let dir = seeded("http://127.0.0.1:9");
    let ok = scangate(&dir.path, &["connection", "add", "--name", "siem"]);
    printed(&ok, &dir.path);
    let check = scangate(&dir.path, &["check"]);
    let valid = format!(
        "{}: valid; tokens: 1 enabled, 0 disabled; connections: 1 enabled, 0 disabled\n",
        dir.path.display()
    );
    assert_eq!(
        (check.code, check.stdout, check.stderr),
        (Some(0), valid, String::new())
    );
    let add = |extra: &[&'static str]| {
        let mut args = vec!["connection", "add", "--name", "new"];
        args.extend_from_slice(extra);
        args
    };
    refused(
        &dir,
        &["connection", "add", "--name", "ci"],
        64,
        "scangate connection: a token named \"ci\" already exists\n",
    );
    refused(
        &dir,
        &["connection", "add", "--name", "siem"],
        64,
        "scangate connection: a connection named \"siem\" already exists\n",
    );
    refused(
        &dir,
        &["token", "add", "--name", "siem"],
        64,
        "scangate token: a connection named \"siem\" already exists\n",
    );
    for verb in ["refresh", "enable", "disable", "remove", "revoke"] {
        refused(
            &dir,
            &["connection", verb, "ghost"],
            64,
            "scangate connection: no connection named \"ghost\"\n",
        );
    }
    refused(
        &dir,
        &add(&["--tenant", "acme,globex"]),
        64,
        "scangate connection: --tenant: Tenant must not contain a comma: X-Scangate-Tenants \
         separates tenants with commas\n",
    );
    refused(
        &dir,
        &add(&["--tenant", "acme", "--tenant", "acme"]),
        64,
        "scangate connection: --tenant: duplicate tenant \"acme\"\n",
    );
    refused(
        &dir,
        &["connection", "add", "--name", " padded"],
        64,
        "scangate connection: --name: Name must not start or end with whitespace\n",
    );
    refused(
        &dir,
        &add(&["--role", "Boss"]),
        64,
        "error: invalid value 'Boss' for '--role <ROLE>': Role must be Administrator, \
         SeniorSecurityOfficer or SecurityOfficer, found \"Boss\"\n\nFor more information, try \
         '--help'.\n",
    );
    // Removing the only connection of a file without tokens would leave it invalid.
    let lone = ConfigDir::new(&Cfg::new("http://127.0.0.1:9", &[]));
    let text = read(&lone.path).replace("      <AccessTokens>\n      </AccessTokens>\n", "");
    std::fs::write(&lone.path, text).unwrap();
    printed(
        &scangate(&lone.path, &["connection", "add", "--name", "only"]),
        &lone.path,
    );
    let err = scangate(&lone.path, &["connection", "remove", "only"]);
    assert_eq!(err.code, Some(1), "{}", err.stderr);
    assert!(
        err.stderr.starts_with("scangate connection: not written: ")
            && err
                .stderr
                .ends_with("UseAccessToken is 1 but <AccessTokens> is missing\n"),
        "{}",
        err.stderr
    );
    let mut bare = std::process::Command::new(env!("CARGO_BIN_EXE_scangate"));
    bare.args(["connection", "list"])
        .env_remove("SCANGATE_CONFIG");
    let run = finished(bare.output().unwrap());
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (
            Some(64),
            "scangate connection: no config file: pass --config PATH or set SCANGATE_CONFIG\n"
        )
    );
    let help = scangate(&dir.path, &["connection", "add", "--help"]);
    assert_eq!(help.code, Some(0));
    assert!(
        help.stdout.contains("[default: SecurityOfficer]"),
        "{}",
        help.stdout
    );
    assert!(help.stdout.contains("least privilege"), "{}", help.stdout);
}

#[test]
fn json_output_has_the_documented_shapes() {
    let dir = seeded("http://127.0.0.1:9");
    let p = &dir.path;
    let args = [
        "connection",
        "add",
        "--name",
        "soar",
        "--role",
        "Administrator",
        "--json",
    ];
    let run = scangate(p, &args);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let added: Value = serde_json::from_str(&run.stdout).unwrap();
    let keys: Vec<&str> = added
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["client_id", "expires_at", "name", "refresh_token"]);
    let token = added["refresh_token"].as_str().unwrap();
    assert!(!run.stderr.contains(token) && !read(p).contains(token));
    assert_eq!(added["name"], "soar");
    let expires = parse_time(added["expires_at"].as_str().unwrap()).unwrap();
    assert!(expires.abs_diff(now_secs() + 86_400) <= 5, "{expires}");
    let rows = listed(p);
    assert_eq!(rows[0]["client_id"], added["client_id"]);
    assert_eq!(rows[0]["role"], "Administrator");
    assert_eq!(
        (rows[0]["tenants"].clone(), rows[0]["root_tenant"].clone()),
        (json!([]), json!(false))
    );

    let run = scangate(p, &["connection", "refresh", "soar", "--json"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let refreshed: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(refreshed["client_id"], added["client_id"]);
    assert_ne!(refreshed["refresh_token"], added["refresh_token"]);
    let token = refreshed["refresh_token"].as_str().unwrap();
    assert!(!run.stderr.contains(token) && !read(p).contains(token));

    // The table: never a token, tenants with "Root without tenants" spelled out.
    printed(
        &scangate(
            p,
            &[
                "connection",
                "add",
                "--name",
                "siem",
                "--tenant",
                "acme",
                "--root-tenant",
            ],
        ),
        p,
    );
    let run = scangate(p, &["connection", "list"]);
    let id = |i: usize| listed(p)[i]["client_id"].as_str().unwrap().to_owned();
    let expected = format!(
        "NAME  CLIENT ID               ROLE             TENANTS                    STATUS              LAST EXCHANGE  LIMITS  DESCRIPTION\n\
         soar  {}  Administrator    -                          pending activation  -              -\n\
         siem  {}  SecurityOfficer  acme,Root without tenants  pending activation  -              -\n",
        id(0),
        id(1)
    );
    assert_eq!(
        (run.code, run.stdout, run.stderr),
        (Some(0), expected, String::new())
    );
}

#[test]
fn an_unreadable_state_store_is_a_warning_and_list_still_answers() {
    let dir = seeded("http://127.0.0.1:9");
    printed(
        &scangate(&dir.path, &["connection", "add", "--name", "siem"]),
        &dir.path,
    );
    let store = dir.dir.path().join("scangate-state.db");
    std::fs::write(&store, vec![0x55; 4096]).unwrap();
    let run = scangate(&dir.path, &["connection", "list", "--json"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.starts_with(&format!(
            "scangate connection: warning: {}: cannot open session state store: ",
            store.display()
        )) && run.stderr.ends_with(
            "; statuses say \"enabled\" where \"active\" and \"pending activation\" cannot be told \
             apart\n"
        ),
        "{}",
        run.stderr
    );
    let rows: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        (rows[0]["status"].as_str(), &rows[0]["last_exchange"]),
        (Some("enabled"), &Value::Null)
    );
    assert_eq!(
        std::fs::read(&store).unwrap(),
        vec![0x55; 4096],
        "never reset"
    );
}

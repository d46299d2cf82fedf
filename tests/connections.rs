//! API connections end to end over real sockets: the exchange at session/confirm, access tokens
//! on the request path, rotation, reuse detection, races, revocation by reload, restarts and a
//! bad state file.

mod common;

use std::time::Duration;

use common::*;
use scangate::auth::exchange::console_refresh_token;
use scangate::auth::jwt::JwtKeys;
use scangate::config::validate::connections::{format_time, now_secs};

const STATIC: &str = "sg_StaticTokenForConnTests-1";
const CID: &str = "AbCdEfGhIjKlMnOpQrStUv";

/// A connection element: SecurityOfficer, tenant acme plus root, enabled unless told otherwise.
fn connection(enabled: bool, not_before: u64) -> String {
    format!(
        "<Connection><Name>siem</Name><ClientId>{CID}</ClientId><Role>SecurityOfficer</Role>\
         <Tenants><Tenant>acme</Tenant><RootWithoutTenants/></Tenants><Enabled>{}</Enabled>\
         <NotBefore>{}</NotBefore></Connection>",
        u8::from(enabled),
        format_time(not_before)
    )
}

fn xml(cfg: &Cfg, connection: &str) -> String {
    cfg.xml().replacen(
        "</AuthSettings>",
        &format!("<ApiConnections>{connection}</ApiConnections></AuthSettings>"),
        1,
    )
}

/// A gateway whose config has one static token and the connection `siem`, begun a minute ago.
async fn start(up: &Upstream) -> (TestGateway, Cfg) {
    let cfg = Cfg::new(&up.url(), &[Tok::new("static", STATIC, true)]);
    let config = ConfigDir::new(&cfg);
    std::fs::write(&config.path, xml(&cfg, &connection(true, now_secs() - 60))).unwrap();
    (TestGateway::start_in(config, false).await, cfg)
}

/// A refresh token as `connection add` would print it, beginning a new family now.
fn console_token() -> String {
    let keys = JwtKeys::derive(&key());
    console_refresh_token(&keys, CID, Duration::from_secs(86_400), now_secs()).0
}

/// POSTs an exchange; returns the status, the JSON body and the Cache-Control header.
async fn confirm(
    gw: &TestGateway,
    client_id: &str,
    body: String,
) -> (u16, serde_json::Value, String) {
    let r = client()
        .post(gw.url(&format!("/api/v1/{client_id}/session/confirm")))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let cache = r
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let json = r.json().await.unwrap_or(serde_json::Value::Null);
    (status, json, cache)
}

async fn exchange(gw: &TestGateway, refresh: &str) -> (u16, serde_json::Value) {
    let body = serde_json::json!({ "refresh_token": refresh }).to_string();
    let (status, json, _) = confirm(gw, CID, body).await;
    (status, json)
}

/// A scan with `token`; returns the status and the WWW-Authenticate header.
async fn scan(gw: &TestGateway, token: &str) -> (u16, String) {
    let r = client()
        .post(gw.url("/api/v3.0/scanmemory"))
        .bearer_auth(token)
        .body("{}")
        .send()
        .await
        .unwrap();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (r.status().as_u16(), challenge)
}

const INVALID_TOKEN: &str = r#"Bearer realm="test-realm", error="invalid_token""#;

#[tokio::test]
async fn exchange_then_call_then_rotate_and_the_upstream_sees_the_connection() {
    let up = Upstream::start(Behaviour::Ok).await;
    let (gw, _) = start(&up).await;
    let (status, json, cache) = confirm(
        &gw,
        CID,
        serde_json::json!({ "refresh_token": console_token() }).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(cache, "no-store");
    let access = json["access_token"].as_str().unwrap().to_owned();
    let refresh = json["refresh_token"].as_str().unwrap().to_owned();
    assert!(
        up.seen().is_empty(),
        "the exchange never reaches an upstream"
    );

    assert_eq!(scan(&gw, &access).await.0, 200);
    let seen = up.seen();
    let h = &seen[0].headers;
    assert_eq!(h["x-scangate-token-name"], "siem");
    assert_eq!(h["x-scangate-tenants"], "acme");
    assert_eq!(h["x-scangate-root-tenant"], "1");
    assert!(h.get("authorization").is_none());

    // The role applies as for a Token: a SecurityOfficer may not clear statistics.
    let denied = client()
        .post(gw.url("/api/v3.0/clearstatistics"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);

    // A refresh token is never an access token.
    assert_eq!(scan(&gw, &refresh).await, (401, INVALID_TOKEN.to_owned()));
    // Rotation: the new refresh token exchanges again, and both access tokens work.
    let (status, next) = exchange(&gw, &refresh).await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(
        scan(&gw, next["access_token"].as_str().unwrap()).await.0,
        200
    );
    assert_eq!(scan(&gw, &access).await.0, 200);
    // Static tokens keep working beside connections.
    assert_eq!(scan(&gw, STATIC).await.0, 200);
}

#[tokio::test]
async fn a_reused_refresh_token_kills_its_whole_family() {
    let up = Upstream::start(Behaviour::Ok).await;
    let (gw, _) = start(&up).await;
    let first = console_token();
    let (_, one) = exchange(&gw, &first).await;
    let (status, two) = exchange(&gw, one["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    let newest_access = two["access_token"].as_str().unwrap();
    assert_eq!(scan(&gw, newest_access).await.0, 200);

    // The console token again: a reuse. invalid_grant, and the family is dead.
    let (status, body) = exchange(&gw, &first).await;
    assert_eq!(
        (status, body),
        (400, serde_json::json!({"error": "invalid_grant"}))
    );
    assert_eq!(
        scan(&gw, newest_access).await,
        (401, INVALID_TOKEN.to_owned())
    );
    assert_eq!(
        scan(&gw, one["access_token"].as_str().unwrap()).await.0,
        401
    );
    let (status, _) = exchange(&gw, two["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        status, 400,
        "the newest refresh token of a dead family is dead too"
    );
    let metrics = gw.gw.metrics.encode();
    assert!(
        metrics.contains(r#"scangate_refresh_token_reuse_total{connection="siem"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"scangate_session_exchanges_total{result="reused"} 1"#),
        "{metrics}"
    );
    // A new console token starts a new family, which works.
    let (status, _) = exchange(&gw, &console_token()).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn twenty_concurrent_exchanges_of_one_refresh_token_give_exactly_one_200() {
    let up = Upstream::start(Behaviour::Ok).await;
    let (gw, _) = start(&up).await;
    let token = console_token();
    let gw = std::sync::Arc::new(gw);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (gw, token) = (gw.clone(), token.clone());
            tokio::spawn(async move { exchange(&gw, &token).await.0 })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        19,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn tampered_access_tokens_are_refused_with_invalid_token() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let up = Upstream::start(Behaviour::Ok).await;
    let (gw, _) = start(&up).await;
    let (_, json) = exchange(&gw, &console_token()).await;
    let access = json["access_token"].as_str().unwrap();
    let parts: Vec<&str> = access.split('.').collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    let with_claims = |claims: &serde_json::Value| {
        format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(claims.to_string()),
            parts[2]
        )
    };
    let mut header: serde_json::Value =
        serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
    header["typ"] = "rt+jwt".into();
    let retyped = format!(
        "{}.{}.{}",
        b64.encode(header.to_string()),
        parts[1],
        parts[2]
    );
    let mut sig = parts[2].to_owned().into_bytes();
    sig[0] = if sig[0] == b'A' { b'B' } else { b'A' };
    let resigned = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        String::from_utf8(sig).unwrap()
    );
    claims["exp"] = (now_secs() + 999_999).into();
    let longer = with_claims(&claims);
    claims["exp"] = json!(0);
    let mut other = claims.clone();
    other["sub"] = "ZZZZZZZZZZZZZZZZZZZZZZ".into();
    for forged in [longer, with_claims(&other), retyped, resigned] {
        assert_eq!(
            scan(&gw, &forged).await,
            (401, INVALID_TOKEN.to_owned()),
            "{forged}"
        );
    }
    assert!(up.seen().is_empty());
    let metrics = gw.gw.metrics.encode();
    assert!(
        metrics.contains(r#"scangate_auth_failures_total{reason="invalid_token"} 4"#),
        "{metrics}"
    );
    // The real one still works.
    assert_eq!(scan(&gw, access).await.0, 200);
}

use serde_json::json;

#[tokio::test]
async fn an_expired_access_token_gets_401_invalid_token() {
    let up = Upstream::start(Behaviour::Ok).await;
    let (gw, _) = start(&up).await;
    let keys = JwtKeys::derive(&key());
    let now = now_secs();
    let claims = scangate::auth::jwt::Claims {
        sub: CID.into(),
        iat: now - 7200,
        exp: now - 3600,
        jti: scangate::auth::jwt::new_id(),
        fam: scangate::auth::jwt::new_id(),
        fit: now - 30,
    };
    let expired = scangate::auth::jwt::mint(&keys, scangate::auth::jwt::Kind::Access, &claims);
    assert_eq!(scan(&gw, &expired).await, (401, INVALID_TOKEN.to_owned()));
    let r = client()
        .post(gw.url("/api/v3.0/scanmemory"))
        .bearer_auth(&expired)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), r#"{"error":"invalid_token"}"#);
    assert!(gw
        .gw
        .metrics
        .encode()
        .contains(r#"scangate_auth_failures_total{reason="expired"} 2"#));
}

#[tokio::test]
async fn bad_exchange_requests_get_their_exact_errors() {
    let up = Upstream::start(Behaviour::Ok).await;
    let (gw, _) = start(&up).await;
    let invalid_request = json!({"error": "invalid_request"});
    for body in ["", "{", r#"{"refresh_token": 7}"#, r#"{"token":"x"}"#] {
        let (status, json, _) = confirm(&gw, CID, body.to_owned()).await;
        assert_eq!((status, json), (400, invalid_request.clone()), "{body:?}");
    }
    let huge = json!({ "refresh_token": "x".repeat(5000) }).to_string();
    let (status, json, _) = confirm(&gw, CID, huge).await;
    assert_eq!((status, json), (413, invalid_request.clone()));
    // Someone else's client ID, and a token that is not a JWT at all: one invalid_grant.
    let grant = json!({"error": "invalid_grant"});
    let body = json!({ "refresh_token": console_token() }).to_string();
    let (status, json, _) = confirm(&gw, "ZZZZZZZZZZZZZZZZZZZZZZ", body).await;
    assert_eq!((status, json), (400, grant.clone()));
    let (status, json) = exchange(&gw, "not-a-jwt").await;
    assert_eq!((status, json), (400, grant.clone()));
    // An access token is not a refresh token.
    let (_, issued) = exchange(&gw, &console_token()).await;
    let (status, json) = exchange(&gw, issued["access_token"].as_str().unwrap()).await;
    assert_eq!((status, json), (400, grant));
    let get = client()
        .get(gw.url(&format!("/api/v1/{CID}/session/confirm")))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST");
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn disabling_or_revoking_by_reload_stops_access_tokens_at_once() {
    let up = Upstream::start(Behaviour::Ok).await;
    let (gw, cfg) = start(&up).await;
    let (_, json) = exchange(&gw, &console_token()).await;
    let access = json["access_token"].as_str().unwrap().to_owned();
    let refresh = json["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(scan(&gw, &access).await.0, 200);
    let reload = |text: String| {
        write_atomic(&gw.config.path, &text);
        let worker = gw.gw.clone();
        async move {
            tokio::task::spawn_blocking(move || worker.reload())
                .await
                .unwrap()
                .unwrap();
        }
    };
    reload(xml(&cfg, &connection(false, now_secs() - 60))).await;
    assert_eq!(scan(&gw, &access).await, (401, INVALID_TOKEN.to_owned()));
    assert_eq!(exchange(&gw, &refresh).await.0, 400);
    // Enabled again: the same family works again (it was never used twice).
    reload(xml(&cfg, &connection(true, now_secs() - 60))).await;
    assert_eq!(scan(&gw, &access).await.0, 200);
    // NotBefore moved past the family's start (`connection revoke`): dead for good.
    reload(xml(&cfg, &connection(true, now_secs() + 1))).await;
    assert_eq!(scan(&gw, &access).await, (401, INVALID_TOKEN.to_owned()));
    assert_eq!(exchange(&gw, &refresh).await.0, 400);
    let metrics = gw.gw.metrics.encode();
    assert!(
        metrics.contains(r#"scangate_auth_failures_total{reason="revoked"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn consumed_refresh_tokens_stay_consumed_across_a_restart() {
    let up = Upstream::start(Behaviour::Ok).await;
    let (gw, _) = start(&up).await;
    let first = console_token();
    let (status, json) = exchange(&gw, &first).await;
    assert_eq!(status, 200);
    let access = json["access_token"].as_str().unwrap().to_owned();
    let config = gw.stop();
    assert!(config.dir.path().join("scangate-state.db").exists());

    let again = TestGateway::start_in(config, false).await;
    // The reuse is detected from the store, and the family dies in the new process too.
    assert_eq!(exchange(&again, &first).await.0, 400);
    assert_eq!(scan(&again, &access).await.0, 401);
    let config = again.stop();
    let third = TestGateway::start_in(config, false).await;
    assert_eq!(
        scan(&third, &access).await.0,
        401,
        "a dead family stays dead after a restart"
    );
}

#[tokio::test]
async fn a_state_file_that_is_not_sqlite_is_a_startup_error_naming_it() {
    let up = Upstream::start(Behaviour::Ok).await;
    let cfg = Cfg::new(&up.url(), &[Tok::new("static", STATIC, true)]);
    let config = ConfigDir::new(&cfg);
    std::fs::write(&config.path, xml(&cfg, &connection(true, 0))).unwrap();
    let state = config.dir.path().join("scangate-state.db");
    std::fs::write(&state, vec![0x55; 8192]).unwrap();
    let err = scangate::state::Gateway::start(&config.path)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&state.display().to_string()), "{err}");
    assert_eq!(
        std::fs::read(&state).unwrap(),
        vec![0x55; 8192],
        "never reset"
    );
}

/// One keep-alive connection that switches credentials: the per-connection memo of the last
/// access token must never answer for another token, whatever its shape.
#[tokio::test]
async fn one_connection_switching_between_access_static_forged_and_unknown_tokens() {
    // A user-chosen static token shaped like a JWT: its signature fails, so it is looked up as
    // a static token after all.
    const JWT_SHAPED: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
    let up = Upstream::start(Behaviour::Ok).await;
    let cfg = Cfg::new(
        &up.url(),
        &[
            Tok::new("static", STATIC, true),
            Tok::new("jwt-shaped", JWT_SHAPED, true),
        ],
    );
    let config = ConfigDir::new(&cfg);
    std::fs::write(&config.path, xml(&cfg, &connection(true, now_secs() - 60))).unwrap();
    let gw = TestGateway::start_in(config, false).await;
    let (_, json) = exchange(&gw, &console_token()).await;
    let access = json["access_token"].as_str().unwrap().to_owned();
    let mut resigned = access.clone().into_bytes();
    let last = resigned.len() - 3;
    resigned[last] = if resigned[last] == b'A' { b'B' } else { b'A' };
    let resigned = String::from_utf8(resigned).unwrap();
    let c = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let call = |token: String| {
        let c = c.clone();
        let url = gw.url("/api/v3.0/scanmemory");
        async move {
            let r = c
                .post(url)
                .bearer_auth(token)
                .body("{}")
                .send()
                .await
                .unwrap();
            let challenge = (r.headers().get("www-authenticate"))
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            (r.status().as_u16(), challenge)
        }
    };
    let plain = r#"Bearer realm="test-realm""#.to_owned();
    let steps = [
        (access.clone(), 200, "siem"),
        (resigned.clone(), 401, "invalid"),
        (access.clone(), 200, "siem"),
        (JWT_SHAPED.to_owned(), 200, "jwt-shaped"),
        (access.clone(), 200, "siem"),
        (STATIC.to_owned(), 200, "static"),
        ("eyJ-not-a-jwt".to_owned(), 401, "unknown"),
        (
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.b3RoZXI".to_owned(),
            401,
            "invalid",
        ),
        (access.clone(), 200, "siem"),
    ];
    let mut names = Vec::new();
    for (i, (token, status, expect)) in steps.iter().enumerate() {
        let (got, challenge) = call(token.clone()).await;
        assert_eq!(got, *status, "step {i}");
        match *expect {
            "invalid" => assert_eq!(challenge, INVALID_TOKEN, "step {i}"),
            "unknown" => assert_eq!(challenge, plain, "step {i}"),
            name => names.push(name),
        }
    }
    let seen: Vec<String> = (up.seen().iter())
        .map(|r| {
            r.headers["x-scangate-token-name"]
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(seen, names);
}

//! Headers a client must not be able to forge: scangate's identity headers, the token header and the
//! forwarding headers, in every spelling a backend may merge (`_` for `-`), on TCP and unix listeners.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ALPHA: &str = "sg_AlphaToken-1";
const GAMMA: &str = "sg_GammaToken-3";

/// What a hostile client adds to its request. A CGI, WSGI, PHP or Rack backend reads each `_` name
/// as the `-` one, so none of these may reach the upstream in any spelling.
const FORGED: &[(&str, &str)] = &[
    ("X-Scangate-Token-Name", "admin"),
    ("X_Scangate_Token_Name", "admin"),
    ("X_Scangate_Tenants", "victim-corp"),
    ("X-Scangate_Tenants", "victim-corp"),
    ("Forwarded", "for=203.0.113.1;proto=https"),
    ("X-Real-IP", "203.0.113.1"),
    ("X_Real_IP", "203.0.113.1"),
    ("X-Forwarded-Port", "443"),
    ("X-Forwarded-Prefix", "/admin"),
    ("X_Forwarded_Prefix", "/admin"),
    ("X_Forwarded_For", "203.0.113.1"),
    ("X_Forwarded_Proto", "https"),
    ("X_Forwarded_Host", "evil.example"),
    ("X-Original-URL", "/api/v3.0/clearstatistics"),
    ("X_Rewrite_URL", "/api/v3.0/clearstatistics"),
];

/// Names the upstream sees, sorted.
fn names(seen: &Seen) -> Vec<String> {
    let mut names: Vec<String> = seen.headers.keys().map(|k| k.to_string()).collect();
    names.sort_unstable();
    names
}

/// alpha: no tenants; gamma: two tenants.
fn config(up: &Upstream) -> ConfigDir {
    let tokens = [
        Tok::new("alpha", ALPHA, true),
        Tok::new("gamma", GAMMA, true),
    ];
    let cfg = Cfg::new(&up.url(), &tokens);
    let config = ConfigDir::new(&cfg);
    let xml = cfg.xml().replacen(
        "<Name>gamma</Name>",
        "<Name>gamma</Name><Tenants><Tenant>acme</Tenant><Tenant>globex</Tenant></Tenants>",
        1,
    );
    std::fs::write(&config.path, xml).unwrap();
    config
}

#[tokio::test]
async fn forged_identity_and_forwarding_headers_never_reach_the_upstream_over_tcp() {
    let up = Upstream::start(Behaviour::Ok).await;
    let gw = TestGateway::start_in(config(&up), false).await;
    for (token, tenants) in [(ALPHA, None), (GAMMA, Some("acme,globex"))] {
        let mut req = client()
            .post(gw.url("/api/v3.0/scanmemory"))
            .bearer_auth(token)
            .header("X-Forwarded-For", "198.51.100.9")
            .body("{}");
        for (name, value) in FORGED {
            req = req.header(*name, *value);
        }
        assert_eq!(req.send().await.unwrap().status(), 200);
        let seen = up.seen().pop().unwrap();
        let mut want = vec![
            "accept",
            "content-length",
            "host",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x-scangate-token-name",
        ];
        if tenants.is_some() {
            want.insert(6, "x-scangate-tenants");
        }
        assert_eq!(names(&seen), want);
        assert_eq!(seen.headers["x-forwarded-for"], "198.51.100.9, 127.0.0.1");
        assert_eq!(seen.headers["x-forwarded-proto"], "http");
        assert_eq!(seen.headers["x-forwarded-host"], gw.addr.to_string());
        let tenants_seen = seen.headers.get("x-scangate-tenants");
        assert_eq!(tenants_seen.map(|v| v.to_str().unwrap()), tenants);
    }
}

/// Starts a gateway on a unix socket in the config's folder.
fn start_unix(config: &ConfigDir) -> std::path::PathBuf {
    let sock = config.dir.path().join("gw.sock");
    let gw = scangate::state::Gateway::start(&config.path).unwrap();
    let listener = scangate::net::Listener::bind_unix(&sock).unwrap();
    tokio::spawn(scangate::proxy::server::run(
        listener,
        gw,
        std::future::pending(),
        Duration::from_secs(1),
    ));
    sock
}

/// One HTTP/1.1 request over a unix socket; returns the status line.
async fn unix_request(sock: &Path, token: &str, extra: &[(&str, &str)]) -> String {
    let mut s = tokio::net::UnixStream::connect(sock).await.unwrap();
    let mut req = format!(
        "POST /api/v3.0/scanmemory HTTP/1.1\r\nHost: scan\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 2\r\nConnection: close\r\n"
    );
    for (name, value) in extra {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n{}");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn forged_headers_never_reach_the_upstream_over_a_unix_listener() {
    let up = Upstream::start(Behaviour::Ok).await;
    let config = config(&up);
    let sock = start_unix(&config);

    // A client XFF is kept as the earlier hops; the last element is the gateway's view: `unix`.
    let mut extra = FORGED.to_vec();
    extra.push(("X-Forwarded-For", "198.51.100.9"));
    let status = unix_request(&sock, ALPHA, &extra).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let seen = up.seen().pop().unwrap();
    let want = [
        "content-length",
        "host",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-scangate-token-name",
    ];
    assert_eq!(names(&seen), want);
    assert_eq!(seen.headers["x-forwarded-for"], "198.51.100.9, unix");
    assert_eq!(seen.headers["x-forwarded-host"], "scan");
    assert_eq!(seen.headers["x-scangate-token-name"], "alpha");

    // Without a client XFF the upstream still learns the request came over the unix socket.
    let status = unix_request(&sock, GAMMA, FORGED).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let seen = up.seen().pop().unwrap();
    assert_eq!(seen.headers["x-forwarded-for"], "unix");
    assert_eq!(seen.headers["x-scangate-tenants"], "acme,globex");
    assert_eq!(seen.headers.get_all("x-scangate-tenants").iter().count(), 1);
}

#[tokio::test]
async fn token_header_is_stripped_in_every_spelling() {
    let up = Upstream::start(Behaviour::Ok).await;
    let mut cfg = Cfg::new(&up.url(), &[Tok::new("alpha", ALPHA, true)]);
    cfg.field = "X-Api-Key".into();
    cfg.bearer = false;
    let gw = TestGateway::start(&cfg).await;
    let resp = client()
        .get(gw.url("/api/v3.0/version"))
        .header("X-Api-Key", ALPHA)
        .header("X_Api_Key", "sg_Other-1")
        .header("x-api_key", "sg_Other-2")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = up.seen().pop().unwrap();
    let leaked: Vec<String> = names(&seen)
        .into_iter()
        .filter(|n| n.replace('_', "-") == "x-api-key")
        .collect();
    assert!(
        leaked.is_empty(),
        "token header reached the upstream as {leaked:?}"
    );
}

#[tokio::test]
async fn auth_off_sends_no_identity_header_whatever_the_client_sent() {
    let up = Upstream::start(Behaviour::Ok).await;
    let mut cfg = Cfg::new(&up.url(), &[]);
    cfg.use_access_token = false;
    let gw = TestGateway::start(&cfg).await;
    let mut req = client().get(gw.url("/api/v3.0/version"));
    for (name, value) in FORGED {
        req = req.header(*name, *value);
    }
    assert_eq!(req.send().await.unwrap().status(), 200);
    let seen = up.seen().pop().unwrap();
    let want = [
        "accept",
        "host",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
    ];
    assert_eq!(names(&seen), want);
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
}

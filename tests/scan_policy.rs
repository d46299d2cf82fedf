//! The role policy over real sockets: exact engine paths only for restricted roles (F6), `scanfile`
//! as a permission of its own, and the gateway-side `ScanningPaths` allow-list (F3).

mod common;

use bytes::Bytes;
use common::*;
use reqwest::Method;

const FORBIDDEN: &str = r#"{"error":"token not allowed for this operation"}"#;
const OUTSIDE: &str = r#"{"error":"scan path not allowed"}"#;

/// Tokens named after what they are; each token is `sg_<name>-1`.
const TOKENS: &[(&str, &str)] = &[
    ("so", "<Role>SecurityOfficer</Role>"),
    (
        "so-scan",
        "<Role>SecurityOfficer</Role><AllowScanFile>1</AllowScanFile>",
    ),
    ("sso", "<Role>SeniorSecurityOfficer</Role>"),
    (
        "sso-noscan",
        "<Role>SeniorSecurityOfficer</Role><AllowScanFile>0</AllowScanFile>",
    ),
    ("admin", ""),
];

fn token(name: &str) -> String {
    format!("sg_{name}-1")
}

/// A config with `tokens` (from [`TOKENS`]) and, when given, `GatewaySettings/ScanningPaths`.
fn config(up: &Upstream, tokens: &[(&str, &str)], scanning_paths: Option<&str>) -> ConfigDir {
    let toks: Vec<Tok> = (tokens.iter())
        .map(|(name, _)| Tok::new(name, &token(name), true))
        .collect();
    let cfg = Cfg::new(&up.url(), &toks);
    let config = ConfigDir::new(&cfg);
    let mut xml = cfg.xml();
    for (name, extra) in tokens {
        let tag = format!("<Name>{name}</Name>");
        xml = xml.replacen(&tag, &format!("{tag}{extra}"), 1);
    }
    if let Some(paths) = scanning_paths {
        let block = format!("<ScanningPaths>{paths}</ScanningPaths>\n  </GatewaySettings>");
        xml = xml.replacen("</GatewaySettings>", &block, 1);
    }
    std::fs::write(&config.path, xml).unwrap();
    config
}

/// Status and body of one request. The path goes out byte for byte: an HTTP client library would
/// resolve `%2e%2e` and `//` first, which is exactly what these tests must not let happen.
async fn call(
    gw: &TestGateway,
    who: &str,
    method: Method,
    path: &str,
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: scan\r\nAuthorization: Bearer {}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        token(who),
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let (_, text) = out.split_once("\r\n\r\n").unwrap_or_default();
    (status, text.to_owned())
}

fn scan_body(path: &str) -> String {
    serde_json::json!({ "object": path, "timeout": "10000" }).to_string()
}

#[tokio::test]
async fn restricted_roles_reach_only_exact_engine_paths_with_any_method() {
    let up = Upstream::start(Behaviour::Ok).await;
    let gw = TestGateway::start_in(config(&up, &TOKENS[..1], None), false).await;
    let denied = [
        (Method::OPTIONS, "/api/v3.0/update/start"),
        (Method::OPTIONS, "/api/v3.0/clearstatistics"),
        (Method::POST, "/api/%2e%2e/scanmemory"),
        (Method::POST, "/api/v3.0%2Fclearstatistics%3F/scanmemory"),
        (Method::POST, "/api/v3.0//scanmemory"),
        (Method::POST, "/api/v3.0/scanmemory/"),
        (Method::POST, "/api/v9/scanmemory"),
    ];
    for (method, path) in denied {
        let got = call(&gw, "so", method.clone(), path, "{}").await;
        assert_eq!(got, (403, FORBIDDEN.to_owned()), "{method} {path}");
    }
    assert!(up.seen().is_empty(), "a refused call reached the upstream");

    let allowed = [
        (Method::OPTIONS, "/api/v3.0/scanmemory"),
        (Method::POST, "/api/v3.1/scanmemory"),
        (Method::POST, "/scanmemory"),
    ];
    for (method, path) in allowed {
        let got = call(&gw, "so", method.clone(), path, "").await;
        assert_eq!(got.0, 200, "{method} {path}");
    }
    assert_eq!(up.seen().len(), 3);
}

#[tokio::test]
async fn scanfile_is_a_permission_of_its_own() {
    let up = Upstream::start(Behaviour::Ok).await;
    let gw = TestGateway::start_in(config(&up, TOKENS, None), false).await;
    let cases = [
        ("so", 403),
        ("so-scan", 200),
        ("sso", 200),
        ("sso-noscan", 403),
        ("admin", 200),
    ];
    for (who, want) in cases {
        for path in ["/api/v3.0/scanfile", "/api/v3.1/scanfile", "/scanfile"] {
            let got = call(&gw, who, Method::POST, path, &scan_body("/etc/shadow")).await;
            assert_eq!(got.0, want, "{who} {path}");
        }
        // OPTIONS follows the path's permission.
        let got = call(&gw, who, Method::OPTIONS, "/api/v3.0/scanfile", "").await;
        assert_eq!(got.0, want, "{who} OPTIONS");
    }
    let (_, body) = call(&gw, "so", Method::POST, "/scanfile", "/etc/shadow").await;
    assert_eq!(body, FORBIDDEN);
    // A grant covers scanfile only.
    let got = call(&gw, "so-scan", Method::GET, "/api/v3.0/getstatistics", "").await;
    assert_eq!(got.0, 403);
}

#[tokio::test]
async fn scanning_paths_limit_every_scanfile_and_forward_the_same_bytes() {
    let up = Upstream::start(Behaviour::Ok).await;
    let paths = "<ScanningPath>/srv/scan/</ScanningPath><ScanningPath>/data/one.bin</ScanningPath>";
    let gw = TestGateway::start_in(config(&up, TOKENS, Some(paths)), false).await;

    let inside = r#"{"timeout":"10000","object":"\/srv\/scan\/in box\/a.exe","omitCleanSubobjectResults":true}"#;
    for who in ["admin", "sso", "so-scan"] {
        assert_eq!(
            call(&gw, who, Method::POST, "/api/v3.0/scanfile", inside).await,
            (200, "upstream-ok".to_owned()),
            "{who}"
        );
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].body, Bytes::from(inside));
    assert_eq!(seen[0].uri, "/api/v3.0/scanfile");
    let v1 = call(&gw, "admin", Method::POST, "/scanfile", "/data/one.bin\n").await;
    assert_eq!(v1.0, 200);
    assert_eq!(up.seen()[3].body, Bytes::from_static(b"/data/one.bin\n"));
    let preflight = call(&gw, "admin", Method::OPTIONS, "/api/v3.1/scanfile", "").await;
    assert_eq!(preflight.0, 200);

    let outside = [
        scan_body("/etc/shadow"),
        scan_body("/srv/scan/../../etc/shadow"),
        scan_body("/srv/scanx/a"),
        scan_body("/data/one.bin2"),
        scan_body("srv/scan/a"),
        scan_body("/srv/scan/a\0/b"),
        scan_body(" /srv/scan/a"),
        r#"{"object":"/srv/scan/a","object":"/etc/shadow"}"#.to_owned(),
        r#"{"Object":"/etc/shadow","object":"/srv/scan/a"}"#.to_owned(),
        r#"{"object":"/srv/scan/a"}x"#.to_owned(),
        r#"{"timeout":"1"}"#.to_owned(),
        String::new(),
    ];
    for body in &outside {
        for path in ["/api/v3.0/scanfile", "/api/v3.1/scanfile"] {
            let got = call(&gw, "admin", Method::POST, path, body).await;
            assert_eq!(got, (403, OUTSIDE.to_owned()), "{path} {body}");
        }
    }
    for body in [
        "/etc/shadow",
        "/srv/scan/..\n",
        " /srv/scan/a",
        "/srv/scan/a\n\n",
        "",
    ] {
        let got = call(&gw, "sso", Method::POST, "/scanfile", body).await;
        assert_eq!(got, (403, OUTSIDE.to_owned()), "v1 {body:?}");
    }
    // v2 multipart names its object in a part: refused rather than guessed at.
    let multipart = client()
        .post(gw.url("/scanfile"))
        .bearer_auth(token("admin"))
        .header("Content-Type", "multipart/mixed; boundary=b")
        .body("/srv/scan/a")
        .send()
        .await
        .unwrap();
    assert_eq!(multipart.status(), 403);
    // Another spelling of scanfile is not a way around the list, even with full access.
    for path in [
        "/api/v3.0/scanfile/",
        "/api/v3.0/ScanFile",
        "/api/v3.0/scan%66ile",
    ] {
        let got = call(&gw, "admin", Method::POST, path, &scan_body("/etc/shadow")).await;
        assert_eq!(got, (403, FORBIDDEN.to_owned()), "{path}");
    }
    // Read up to 64 KiB: a body of exactly that passes, one byte more is refused.
    let padded = |len: usize| {
        let body = scan_body("/srv/scan/a");
        let pad = len - body.len() - r#""pad":"","#.len();
        format!("{{\"pad\":\"{}\",{}", "x".repeat(pad), &body[1..])
    };
    let exact = padded(64 * 1024);
    let got = call(&gw, "admin", Method::POST, "/api/v3.0/scanfile", &exact).await;
    assert_eq!(got.0, 200);
    assert_eq!(up.seen()[5].body.len(), 64 * 1024);
    let big = padded(64 * 1024 + 1);
    let got = call(&gw, "admin", Method::POST, "/api/v3.0/scanfile", &big).await;
    let too_large = r#"{"error":"request body too large"}"#;
    assert_eq!(got, (413, too_large.to_owned()));
    assert_eq!(
        up.seen().len(),
        6,
        "a refused scanfile reached the upstream"
    );

    // Other calls are not read whole, and large bodies still pass.
    let got = call(&gw, "so", Method::POST, "/api/v3.0/scanmemory", &big).await;
    assert_eq!(got.0, 200);
}

#[tokio::test]
async fn scanning_paths_apply_without_token_checks_and_an_empty_list_refuses_all() {
    let up = Upstream::start(Behaviour::Ok).await;
    let mut cfg = Cfg::new(&up.url(), &[]);
    cfg.use_access_token = false;
    let config = ConfigDir::new(&cfg);
    let xml = cfg.xml().replacen(
        "</GatewaySettings>",
        "<ScanningPaths><ScanningPath>/srv/scan</ScanningPath></ScanningPaths></GatewaySettings>",
        1,
    );
    std::fs::write(&config.path, xml).unwrap();
    let gw = TestGateway::start_in(config, true).await;
    let post = |body: String| {
        client()
            .post(gw.url("/api/v3.0/scanfile"))
            .body(body)
            .send()
    };
    assert_eq!(post(scan_body("/srv/scan/a")).await.unwrap().status(), 200);
    let out = post(scan_body("/etc/shadow")).await.unwrap();
    assert_eq!(out.status(), 403);
    assert_eq!(out.text().await.unwrap(), OUTSIDE);

    // A reload applies the list: empty, it refuses every scanfile.
    let xml = cfg.xml().replacen(
        "</GatewaySettings>",
        "<ScanningPaths/></GatewaySettings>",
        1,
    );
    write_atomic(&gw.config.path, &xml);
    let refused = eventually(std::time::Duration::from_secs(10), || async {
        post(scan_body("/srv/scan/a")).await.unwrap().status() == 403
    });
    assert!(refused.await, "the reloaded empty list did not apply");
}

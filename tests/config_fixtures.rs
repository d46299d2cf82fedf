//! Every fixture under `tests/fixtures/`: each invalid one fails with exactly the errors listed here
//! (`file:line:col: path: rule`, the file label being the fixture's name), and each valid one parses
//! into the settings it spells out.

use std::path::Path;
use std::time::Duration;

use scangate::config::validate::parse;
use scangate::config::{ListenAddr, Role, Settings, UpstreamAddr};

/// Expected errors per invalid fixture, without the `file:` label, in file order.
const INVALID: &[(&str, &[&str])] = &[
    ("bad-auth-request-field.xml", &["7:7: ServerSettings/AuthSettings/AuthRequestField: AuthRequestField must hold only RFC 7230 token characters (letters, digits and !#$%&'*+-.^_`|~), found \"X-Api Key\""]),
    ("connection-string-host-name.xml", &["4:5: ServerSettings/ConnectionString: ConnectionString \"http://scan.example.com:8080\": use an IP address (or localhost), not a host name"]),
    ("description-1001-characters.xml", &["13:11: ServerSettings/AuthSettings/AccessTokens/Token[1]/Description: Description must be at most 1000 characters, found 1001"]),
    ("doctype.xml", &["2:1: DTDs and entity declarations are not allowed"]),
    ("duplicate-name.xml", &["21:11: ServerSettings/AuthSettings/AccessTokens/Token[3]/Name: duplicate name \"ci\""]),
    ("duplicate-value.xml", &["22:11: ServerSettings/AuthSettings/AccessTokens/Token[3]/Value: duplicate value (same token as Token[1])"]),
    ("empty-element.xml", &["5:5: ServerSettings/SessionTimeout: must not be empty"]),
    ("enabled-2.xml", &["13:11: ServerSettings/AuthSettings/AccessTokens/Token[1]/Enabled: Enabled must be 0 or 1, found \"2\""]),
    (
        "https-without-cert-files.xml",
        &[
            "3:3: ServerSettings: ConnectionString is https:// but <TlsCertificateFile> is missing",
            "3:3: ServerSettings: ConnectionString is https:// but <TlsCertificateKeyFile> is missing",
        ],
    ),
    ("keep-alive-out-of-range.xml", &["5:44: ServerSettings/KeepAliveSettings/TimeoutMs: TimeoutMs must be a whole number from 0 to 18000, found \"18001\""]),
    ("malformed-xml.xml", &["16:29: ServerSettings/AuthSettings/AccessTokens/Token[2]/Name: ill-formed document: expected `</Name>`, but `</Nmae>` was found"]),
    ("missing-connection-string.xml", &["3:3: ServerSettings: <ConnectionString> is mandatory"]),
    ("missing-gateway-settings.xml", &["2:1: <GatewaySettings> is mandatory"]),
    ("name-41-characters.xml", &["16:11: ServerSettings/AuthSettings/AccessTokens/Token[2]/Name: Name must be 1 to 40 characters, found 41"]),
    (
        "several-errors.xml",
        &[
            "13:11: ServerSettings/AuthSettings/AccessTokens/Token[1]/Enabled: Enabled must be 0 or 1, found \"yes\"",
            "16:11: ServerSettings/AuthSettings/AccessTokens/Token[2]/Name: duplicate name \"ci\"",
            "21:11: ServerSettings/AuthSettings/AccessTokens/Token[3]/Name: must not be empty",
            "29:5: GatewaySettings/Upstreams: Upstreams needs at least one <Upstream>",
            "30:5: GatewaySettings/Realm: Realm must be 1 to 100 printable ASCII characters without \" or \\, found \"say \\\"hi\\\"\"",
        ],
    ),
    ("unclosed-element.xml", &["2:1: ill-formed document: start tag not closed: `</Configuration>` not found before end of input"]),
    ("unknown-element-in-gateway.xml", &["27:5: GatewaySettings/Upstream: unknown element <Upstream>"]),
    ("unknown-element-in-token.xml", &["13:11: ServerSettings/AuthSettings/AccessTokens/Token[1]/Enable: unknown element <Enable>"]),
    ("unknown-entity.xml", &["11:19: ServerSettings/AuthSettings/AccessTokens/Token[1]/Name: unknown entity `&lol;`: only the five XML entities and character references are allowed"]),
    ("unknown-role.xml", &["13:11: ServerSettings/AuthSettings/AccessTokens/Token[1]/Role: Role must be Administrator, SeniorSecurityOfficer or SecurityOfficer, found \"Boss\""]),
    ("upstream-not-url.xml", &["26:7: GatewaySettings/Upstreams/Upstream[2]: upstream \"ftp://x\" is not an http(s) URL or a unix socket path"]),
    ("use-access-token-without-token.xml", &["9:7: ServerSettings/AuthSettings/AccessTokens: UseAccessToken is 1 but AccessTokens has no Token"]),
    ("value-87-characters.xml", &["12:11: ServerSettings/AuthSettings/AccessTokens/Token[1]/Value: Value must be 88 characters, found 87"]),
    ("value-not-base64.xml", &["12:11: ServerSettings/AuthSettings/AccessTokens/Token[1]/Value: Value is not base64 of 64 bytes"]),
    ("wrong-root.xml", &["2:1: the root element must be <Configuration>, found <Config>"]),
];

fn fixture(dir: &str, name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture_names(dir: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let mut names: Vec<String> = std::fs::read_dir(path)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".xml"))
        .collect();
    names.sort();
    names
}

#[test]
fn every_invalid_fixture_has_an_expectation() {
    let mut listed: Vec<&str> = INVALID.iter().map(|(name, _)| *name).collect();
    listed.sort();
    assert_eq!(fixture_names("invalid"), listed);
}

#[test]
fn invalid_fixtures_fail_with_exact_messages() {
    let mut mismatches = Vec::new();
    for (name, expected) in INVALID {
        let got = match parse(&fixture("invalid", name), name) {
            Ok(_) => vec!["(parsed without error)".to_owned()],
            Err(errors) => errors.0.iter().map(|e| e.to_string()).collect(),
        };
        let expected: Vec<String> = expected.iter().map(|e| format!("{name}:{e}")).collect();
        if got != expected {
            mismatches.push(format!(
                "{name}\n  expected: {expected:#?}\n  got: {got:#?}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

fn valid(name: &str) -> Settings {
    parse(&fixture("valid", name), name).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_valid_fixture_parses() {
    for name in fixture_names("valid") {
        valid(&name);
    }
}

#[test]
fn minimal_fixture_gets_every_default() {
    let s = valid("minimal.xml");
    assert_eq!(
        s.server.listen,
        ListenAddr::Tcp {
            addr: "127.0.0.1:8080".parse().unwrap(),
            tls: false
        }
    );
    assert_eq!(s.server.max_sessions, 1024);
    assert_eq!(s.server.max_request_bytes, 104_857_600);
    assert_eq!(
        s.server.session_timeout,
        Some(Duration::from_millis(10_000))
    );
    assert_eq!(s.server.tls, None);
    assert_eq!(s.server.keep_alive, Default::default());
    assert!(!s.auth.use_access_token);
    assert_eq!(s.auth.request_field, "authorization");
    assert!(s.auth.bearer);
    assert!(s.auth.tokens.is_empty());
    assert_eq!(s.gateway.upstreams.len(), 1);
    assert_eq!(s.gateway.upstreams[0].to_string(), "http://127.0.0.1:9999");
    assert_eq!(s.gateway.token_key_file, Path::new("scangate.key"));
    assert_eq!(s.gateway.admin, Some("127.0.0.1:9090".parse().unwrap()));
    assert_eq!(s.gateway.realm, "scangate");
    assert_eq!(s.gateway.upstream_ca_file, None);
}

#[test]
fn full_fixture_reads_every_element() {
    let s = valid("full.xml");
    let server = &s.server;
    assert_eq!(
        server.listen,
        ListenAddr::Tcp {
            addr: "0.0.0.0:8443".parse().unwrap(),
            tls: true
        }
    );
    assert_eq!(
        (server.max_sessions, server.max_request_bytes),
        (2048, 10_591_440)
    );
    assert_eq!(server.session_timeout, None);
    let tls = server.tls.as_ref().unwrap();
    assert_eq!(
        (tls.cert.to_str(), tls.key.to_str()),
        (Some("/etc/scangate/tls.crt"), Some("tls.key"))
    );
    assert!(!server.keep_alive.enabled);
    assert_eq!(server.keep_alive.idle_timeout, None);
    assert_eq!(server.keep_alive.max_requests, Some(10));

    assert!(s.auth.use_access_token);
    assert_eq!(s.auth.request_field, "x-api-key");
    assert!(!s.auth.bearer);
    let [mail, admin, soc] = &s.auth.tokens[..] else {
        panic!("three tokens expected: {:?}", s.auth.tokens);
    };
    assert_eq!(mail.name, "mail-gateway");
    assert_eq!(mail.digest[..4], [1, 2, 3, 4]);
    assert_eq!(
        mail.description.as_deref(),
        Some("Postfix relay, 2026-11 & friends")
    );
    assert!(mail.enabled);
    assert_eq!(mail.role, Some(Role::SecurityOfficer));
    assert_eq!(mail.tenants, ["acme", "globex"]);
    assert_eq!(admin.name, "管理者");
    assert_eq!(
        admin.digest[..4],
        [2, 4, 6, 8],
        "Value is trimmed before decoding"
    );
    assert_eq!(
        admin.description, None,
        "an empty Description is no description"
    );
    assert!(!admin.enabled);
    assert_eq!(admin.role, Some(Role::Administrator));
    assert_eq!(soc.role, Some(Role::SeniorSecurityOfficer));
    assert!(soc.tenants.is_empty());

    let upstreams: Vec<String> = s.gateway.upstreams.iter().map(|u| u.to_string()).collect();
    assert_eq!(
        upstreams,
        [
            "http://127.0.0.1:9999",
            "https://scan-2.internal:9443",
            "unix:/run/kavhttpd.sock"
        ]
    );
    assert!(
        matches!(&s.gateway.upstreams[1], UpstreamAddr::Http(uri) if uri.port_u16() == Some(9443))
    );
    assert_eq!(
        s.gateway.token_key_file,
        Path::new("/etc/scangate/scangate.key")
    );
    assert_eq!(s.gateway.admin, None);
    assert_eq!(s.gateway.realm, "scan engine");
    assert_eq!(
        s.gateway.upstream_ca_file.as_deref(),
        Some(Path::new("ca.pem"))
    );
}

#[test]
fn kavhttpd_fixture_loads_ignoring_scan_engine_blocks() {
    let s = valid("kavhttpd.xml");
    assert_eq!(s.server.max_sessions, 50);
    let tls = s.server.tls.as_ref().unwrap();
    assert_eq!(
        tls.cert,
        Path::new("/opt/kaspersky/http_data/https_cert.crt")
    );
    let names: Vec<(&str, bool)> = s
        .auth
        .tokens
        .iter()
        .map(|t| (t.name.as_str(), t.enabled))
        .collect();
    assert_eq!(
        names,
        [("Unlimited key", true), ("Key for URL-scanning", false)]
    );
    assert_eq!(s.auth.tokens[0].role, None);
    assert_eq!(
        s.gateway.upstreams,
        [UpstreamAddr::Unix("/tmp/.kavhttpd".into())]
    );
}

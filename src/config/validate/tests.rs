//! Edge cases of validation. The fixtures in `tests/fixtures` cover one rule per file; these cover
//! the corners: positions, Unicode lengths, every accepted and refused address form, defaults.

use std::path::PathBuf;

use super::*;
use crate::config::{ListenAddr, Role, UpstreamAddr};

const V1: &str =
    "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4/QA==";

/// A file with `server` inside ServerSettings (after a ConnectionString unless `server` has one)
/// and `gateway` inside GatewaySettings (after an Upstreams unless `gateway` has one).
fn file(server: &str, gateway: &str) -> String {
    let conn = if server.contains("<ConnectionString>") {
        ""
    } else {
        "<ConnectionString>http://127.0.0.1:8080</ConnectionString>"
    };
    let ups = if gateway.contains("<Upstreams") {
        ""
    } else {
        "<Upstreams><Upstream>http://127.0.0.1:9999</Upstream></Upstreams>"
    };
    format!(
        "<Configuration>\n<ServerSettings>{conn}{server}</ServerSettings>\n\
         <GatewaySettings>{ups}{gateway}</GatewaySettings>\n</Configuration>\n"
    )
}

/// A file with one token whose children are `token`.
fn with_token(token: &str) -> String {
    file(
        &format!(
            "<AuthSettings><AccessTokens><Token>{token}</Token></AccessTokens></AuthSettings>"
        ),
        "",
    )
}

fn token(name: &str) -> String {
    format!("<Name>{name}</Name><Value>{V1}</Value><Enabled>1</Enabled>")
}

/// `path: rule` of every error (positions are checked in their own tests).
fn errors(text: &str) -> Vec<String> {
    match parse(text, "t.xml") {
        Ok(_) => Vec::new(),
        Err(e) => {
            e.0.iter()
                .map(|e| format!("{}: {}", e.path, e.rule))
                .collect()
        }
    }
}

fn ok(text: &str) -> Settings {
    parse(text, "t.xml").unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn positions_count_lines_and_characters() {
    let text = "<Configuration>\n<ServerSettings><ConnectionString>x</ConnectionString>\n  \
                <AuthSettings><AccessTokens><Token><Name>名前</Name><Bogus/></Token></AccessTokens>\
                </AuthSettings></ServerSettings><GatewaySettings><Upstreams><Upstream>/s</Upstream>\
                </Upstreams></GatewaySettings></Configuration>";
    let e = parse(text, "t.xml").unwrap_err();
    let shown: Vec<String> = e.0.iter().map(ToString::to_string).collect();
    // File order: the Token's own errors (at its start tag, in the order found) before its child's.
    let token = "ServerSettings/AuthSettings/AccessTokens/Token[1]";
    assert_eq!(
        shown,
        [
            format!("t.xml:3:31: {token}: <Value> is mandatory"),
            format!("t.xml:3:31: {token}: <Enabled> is mandatory"),
            format!("t.xml:3:53: {token}/Bogus: unknown element <Bogus>"),
        ]
    );
}

#[test]
fn names_count_unicode_characters() {
    let forty = "名".repeat(40);
    assert_eq!(ok(&with_token(&token(&forty))).auth.tokens[0].name, forty);
    assert_eq!(
        errors(&with_token(&token(&"名".repeat(41)))),
        ["ServerSettings/AuthSettings/AccessTokens/Token[1]/Name: Name must be 1 to 40 characters, found 41"]
    );
    assert_eq!(
        errors(&with_token(&token("a&#10;b"))),
        ["ServerSettings/AuthSettings/AccessTokens/Token[1]/Name: Name must not contain control characters"]
    );
}

#[test]
fn all_errors_are_collected_in_one_pass() {
    let text = file(
        "<MaxHTTPSessionsNum>-1</MaxHTTPSessionsNum><KeepAliveSettings><Enabled>2</Enabled>\
         </KeepAliveSettings>",
        "<Realm></Realm>",
    );
    assert_eq!(
        errors(&text),
        [
            "ServerSettings/MaxHTTPSessionsNum: MaxHTTPSessionsNum must be a whole number from 0 to 4294967295, found \"-1\"",
            "ServerSettings/KeepAliveSettings/Enabled: Enabled must be 0 or 1, found \"2\"",
            "GatewaySettings/Realm: must not be empty",
        ]
    );
    let both_missing = "<Configuration><KSNSettings/></Configuration>";
    assert_eq!(
        errors(both_missing),
        [
            ": <ServerSettings> is mandatory",
            ": <GatewaySettings> is mandatory"
        ]
    );
    let shown = parse(both_missing, "t.xml").unwrap_err().to_string();
    assert_eq!(
        shown,
        "t.xml:1:1: <ServerSettings> is mandatory\nt.xml:1:1: <GatewaySettings> is mandatory"
    );
}

#[test]
fn an_empty_token_misses_three_elements() {
    let t = "ServerSettings/AuthSettings/AccessTokens/Token[1]";
    assert_eq!(
        errors(&with_token("")),
        [
            format!("{t}: <Name> is mandatory"),
            format!("{t}: <Value> is mandatory"),
            format!("{t}: <Enabled> is mandatory"),
        ]
    );
    assert_eq!(
        errors(&with_token(&format!("junk{}", token("a"))))[0],
        format!("{t}: unexpected text in <Token>")
    );
    assert_eq!(
        errors(&with_token(&token("<b>x</b>"))),
        [format!("{t}/Name/b: unknown element <b>")]
    );
    assert_eq!(
        errors(&with_token(&format!("{}<Name>b</Name>", token("a")))),
        [format!("{t}/Name: duplicate element <Name>")]
    );
}

#[test]
fn use_access_token_makes_its_siblings_mandatory() {
    let a = "ServerSettings/AuthSettings";
    let text = file(
        "<AuthSettings><UseAccessToken>1</UseAccessToken></AuthSettings>",
        "",
    );
    assert_eq!(
        errors(&text),
        [
            format!("{a}: UseAccessToken is 1 but <AuthRequestField> is missing"),
            format!("{a}: UseAccessToken is 1 but <UseBearerAuthScheme> is missing"),
            format!("{a}: UseAccessToken is 1 but <AccessTokens> is missing"),
        ]
    );
    let off = file(
        "<AuthSettings><UseAccessToken>0</UseAccessToken><AccessTokens/></AuthSettings>",
        "",
    );
    assert!(!ok(&off).auth.use_access_token);
}

#[test]
fn roles_and_tenants() {
    let role = |r: &str| {
        ok(&with_token(&format!("{}<Role>{r}</Role>", token("a"))))
            .auth
            .tokens[0]
            .role
    };
    assert_eq!(role("Security Officer"), Some(Role::SecurityOfficer));
    assert_eq!(
        role("SeniorSecurityOfficer"),
        Some(Role::SeniorSecurityOfficer)
    );
    assert_eq!(role(" Administrator\n"), Some(Role::Administrator));
    let tenants = |t: &str| {
        errors(&with_token(&format!(
            "{}<Tenants>{t}</Tenants>",
            token("a")
        )))
    };
    let t = "ServerSettings/AuthSettings/AccessTokens/Token[1]/Tenants";
    assert_eq!(
        tenants(&format!(
            "<Tenant>a</Tenant><Tenant>{}</Tenant><Tenant/>",
            "x".repeat(101)
        )),
        [
            format!("{t}/Tenant[2]: Tenant must be 1 to 100 characters, found 101"),
            format!("{t}/Tenant[3]: must not be empty"),
        ]
    );
    // X-Scangate-Tenants joins tenants with commas: "acme,globex" would read as two tenants.
    assert_eq!(
        tenants("<Tenant>a</Tenant><Tenant>acme,globex</Tenant>"),
        [format!(
            "{t}/Tenant[2]: Tenant must not contain a comma: X-Scangate-Tenants separates \
             tenants with commas"
        )]
    );
    assert_eq!(
        tenants("<Tenant>a</Tenant><Tnant/>"),
        [format!("{t}/Tnant: unknown element <Tnant>")]
    );
}

#[test]
fn auth_request_field_rules() {
    let field = |f: &str| {
        let text = file(
            &format!("<AuthSettings><AuthRequestField>{f}</AuthRequestField></AuthSettings>"),
            "",
        );
        parse(&text, "t.xml")
            .map(|s| s.auth.request_field.to_string())
            .map_err(|e| e.0[0].rule.clone())
    };
    assert_eq!(field("X-Api_Key~1"), Ok("x-api_key~1".into()));
    assert_eq!(
        field("ab"),
        Err("AuthRequestField must be 3 to 40 characters, found 2".into())
    );
    assert_eq!(
        field(&"a".repeat(41)),
        Err("AuthRequestField must be 3 to 40 characters, found 41".into())
    );
    assert!(field("X-Äpi")
        .unwrap_err()
        .contains("RFC 7230 token characters"));
    assert!(field("content-LENGTH")
        .unwrap_err()
        .contains("is a header HTTP or scangate relies on"));
    assert!(field("X-Scangate-Token")
        .unwrap_err()
        .contains("is a header HTTP or scangate relies on"));
}

#[test]
fn connection_string_forms() {
    let listen = |c: &str| {
        let text = file(&format!("<ConnectionString>{c}</ConnectionString>"), "");
        parse(&text, "t.xml")
            .map(|s| s.server.listen)
            .map_err(|e| e.0[0].rule.clone())
    };
    let tcp = |a: &str| {
        Ok(ListenAddr::Tcp {
            addr: a.parse().unwrap(),
            tls: false,
        })
    };
    assert_eq!(listen("http://localhost:80/"), tcp("127.0.0.1:80"));
    assert_eq!(listen("HTTP://[::1]:8080"), tcp("[::1]:8080"));
    assert_eq!(
        listen("/tmp/.kavhttpd"),
        Ok(ListenAddr::Unix("/tmp/.kavhttpd".into()))
    );
    assert_eq!(
        listen("run/gw.sock"),
        Ok(ListenAddr::Unix("run/gw.sock".into()))
    );
    let refused = [
        (
            "127.0.0.1:9999",
            "has no scheme: write http://127.0.0.1:9999 or https://127.0.0.1:9999",
        ),
        ("http://0.0.0.0", "needs a port, as in 127.0.0.1:8080"),
        (
            "http://0.0.0.0:65536",
            "the port must be a number from 0 to 65535",
        ),
        (
            "http://::1:80",
            "write an IPv6 address in brackets, as in [::1]:8080",
        ),
        (
            "http://scan.example:80",
            "use an IP address (or localhost), not a host name",
        ),
        (
            "tcp://0.0.0.0:80",
            "must be http://ip:port, https://ip:port or a unix socket path",
        ),
    ];
    for (text, why) in refused {
        let err = listen(text).unwrap_err();
        assert!(err.contains(why), "{text}: {err}");
    }
    let long = format!("/{}", "s".repeat(107));
    assert_eq!(
        listen(&long).unwrap_err(),
        "unix socket path is 108 bytes long; the limit is 107"
    );
}

#[test]
fn upstream_forms() {
    let upstream = |u: &str| {
        let text = file(
            "",
            &format!("<Upstreams><Upstream> {u} </Upstream></Upstreams>"),
        );
        parse(&text, "t.xml")
            .map(|s| s.gateway.upstreams[0].to_string())
            .map_err(|e| e.0[0].rule.clone())
    };
    assert_eq!(
        upstream("https://scan.internal"),
        Ok("https://scan.internal".into())
    );
    assert_eq!(
        upstream("http://[::1]:9999/"),
        Ok("http://[::1]:9999".into())
    );
    assert_eq!(upstream("/run/kav.sock"), Ok("unix:/run/kav.sock".into()));
    let refused = [
        (
            "ftp://x",
            "upstream \"ftp://x\" is not an http(s) URL or a unix socket path",
        ),
        (
            "run/kav.sock",
            "upstream \"run/kav.sock\" is not an http(s) URL or a unix socket path",
        ),
        (
            "http://h:99999",
            "upstream \"http://h:99999\" is not an http(s) URL or a unix socket path",
        ),
        (
            "http://h:1/scan",
            "upstream \"http://h:1/…\" must not have a path or query",
        ),
        (
            "http://h:1/?a=b",
            "upstream \"http://h:1/…\" must not have a path or query",
        ),
        // Only scheme, host and port are ever quoted: no credentials, path or query.
        (
            "http://u:p@h:1",
            "upstream \"http://***@h:1\" must not hold a user name or password",
        ),
        (
            "ftp://u:p@h:1/x?k=s",
            "upstream \"ftp://***@h:1/…\" must not hold a user name or password",
        ),
    ];
    for (text, rule) in refused {
        assert_eq!(upstream(text), Err(rule.into()), "{text}");
    }
    let text = file(
        "",
        "<Upstreams><Upstream>/a</Upstream><Upstream>/b</Upstream></Upstreams>",
    );
    let ups = ok(&text).gateway.upstreams;
    assert_eq!(
        ups,
        [
            UpstreamAddr::Unix("/a".into()),
            UpstreamAddr::Unix("/b".into())
        ]
    );
}

#[test]
fn numbers_defaults_and_ranges() {
    let text = file(
        "<MaxHTTPSessionsNum>0</MaxHTTPSessionsNum><MaxTCPFileSize>0</MaxTCPFileSize>\
         <SessionTimeout>0</SessionTimeout><Flags>x</Flags><CORS/>\
         <KeepAliveSettings><TimeoutMs>18000</TimeoutMs><MaxRequests>0</MaxRequests></KeepAliveSettings>",
        "<AdminConnectionString>localhost:9091</AdminConnectionString><Realm>r</Realm>",
    );
    let s = ok(&text);
    assert_eq!(
        (s.server.max_sessions, s.server.max_request_bytes),
        (1024, 104_857_600)
    );
    assert_eq!(s.server.session_timeout, None);
    assert!(s.server.keep_alive.enabled);
    assert_eq!(
        s.server.keep_alive.idle_timeout,
        Some(std::time::Duration::from_secs(18))
    );
    assert_eq!(s.server.keep_alive.max_requests, None);
    assert_eq!(s.gateway.admin, Some("127.0.0.1:9091".parse().unwrap()));

    let bad = file(
        "<SessionTimeout>+5</SessionTimeout><KeepAliveSettings><MaxRequests>1001</MaxRequests>\
         <Idle>1</Idle></KeepAliveSettings>",
        "<AdminConnectionString>gw:1</AdminConnectionString><Tokens/>",
    );
    assert_eq!(
        errors(&bad),
        [
            "ServerSettings/SessionTimeout: SessionTimeout must be a whole number from 0 to 4294967295, found \"+5\"",
            "ServerSettings/KeepAliveSettings/MaxRequests: MaxRequests must be a whole number from 0 to 1000, found \"1001\"",
            "ServerSettings/KeepAliveSettings/Idle: unknown element <Idle>",
            "GatewaySettings/AdminConnectionString: AdminConnectionString must be ip:port or off, found \"gw:1\": use an IP address (or localhost), not a host name",
            "GatewaySettings/Tokens: unknown element <Tokens>",
        ]
    );
}

#[test]
fn connection_limits_default_from_max_sessions_and_zero_means_none() {
    use std::time::Duration;
    let s = ok(&file("", ""));
    let g = &s.gateway;
    assert_eq!(g.max_connections_per_client, Some(256));
    // The per-engine cap is Scan Engine's MaxHTTPSessionsNum default, not the gateway's.
    assert_eq!(g.upstream.max_sessions, Some(10));
    assert_eq!(g.send_timeout, Some(Duration::from_secs(60)));

    let s = ok(&file("<MaxHTTPSessionsNum>3</MaxHTTPSessionsNum>", ""));
    let g = &s.gateway;
    assert_eq!(g.max_connections_per_client, Some(1));
    assert_eq!(g.upstream.max_sessions, Some(10));

    let set =
        "<MaxConnectionsPerClient>7</MaxConnectionsPerClient><SendTimeoutMs>250</SendTimeoutMs>\
               <MaxUpstreamConnections>9</MaxUpstreamConnections>";
    let s = ok(&file("", set));
    let g = &s.gateway;
    assert_eq!(g.max_connections_per_client, Some(7));
    // The deprecated MaxUpstreamConnections still sets the per-engine cap.
    assert_eq!(g.upstream.max_sessions, Some(9));
    assert!(g.upstream.legacy_max_upstream_connections);
    assert_eq!(g.send_timeout, Some(Duration::from_millis(250)));

    let off =
        "<MaxConnectionsPerClient>0</MaxConnectionsPerClient><SendTimeoutMs>0</SendTimeoutMs>\
               <MaxUpstreamConnections>0</MaxUpstreamConnections>";
    let s = ok(&file("", off));
    let g = &s.gateway;
    assert_eq!(g.max_connections_per_client, None);
    assert_eq!(g.upstream.max_sessions, None);
    assert_eq!(g.send_timeout, None);

    let bad =
        "<MaxConnectionsPerClient>-1</MaxConnectionsPerClient><SendTimeoutMs>1s</SendTimeoutMs>\
               <MaxUpstreamConnections>4294967296</MaxUpstreamConnections>";
    assert_eq!(
        errors(&file("", bad)),
        [
            "GatewaySettings/MaxConnectionsPerClient: MaxConnectionsPerClient must be a whole number from 0 to 4294967295, found \"-1\"",
            "GatewaySettings/SendTimeoutMs: SendTimeoutMs must be a whole number from 0 to 4294967295, found \"1s\"",
            "GatewaySettings/MaxUpstreamConnections: MaxUpstreamConnections must be a whole number from 0 to 4294967295, found \"4294967296\"",
        ]
    );
}

#[test]
fn duplicate_values_name_the_first_holder() {
    let tokens = format!("<Token>{}</Token><Token>{}</Token>", token("a"), token("b"));
    let text = file(
        &format!("<AuthSettings><AccessTokens>{tokens}</AccessTokens></AuthSettings>"),
        "",
    );
    assert_eq!(
        errors(&text),
        ["ServerSettings/AuthSettings/AccessTokens/Token[2]/Value: duplicate value (same token as Token[1])"]
    );
}

#[test]
fn a_second_block_is_reported_and_foreign_ones_ignored() {
    let text = file("<Flags>x</Flags><CORS><Origin/></CORS>", "").replace(
        "</Configuration>",
        "<GatewaySettings/><KSNSettings><X/></KSNSettings></Configuration>",
    );
    assert_eq!(
        errors(&text),
        ["GatewaySettings: duplicate element <GatewaySettings>"]
    );
}

#[test]
fn plain_and_general_token_paths_read_the_same_values() {
    // Token 1 takes the general path (an entity, Tenants); token 2 the plain one; token 3 the
    // general one again (a CDATA section). All three must come out as written.
    let v2 = V1.replacen('A', "B", 1);
    let v3 = V1.replacen('A', "C", 1);
    let text = file(
        &format!(
            "<AuthSettings><AccessTokens>\
             <Token><Name> a&amp;b </Name><Value>{V1}</Value><Enabled>0</Enabled>\
             <Description>d1</Description><Role>Security Officer</Role>\
             <Tenants><Tenant>t</Tenant></Tenants><AllowScanFile>1</AllowScanFile></Token>\
             <Token>\n <Name> c </Name><Value> {v2} </Value><Enabled>1</Enabled>\
             <Description> d2 </Description><Role>Administrator</Role>\
             <AllowScanFile> 0 </AllowScanFile></Token>\
             <Token><Name><![CDATA[e]]></Name><Value>{v3}</Value><Enabled>1</Enabled>\
             <Description></Description></Token>\
             </AccessTokens></AuthSettings>"
        ),
        "",
    );
    let tokens = ok(&text).auth.tokens;
    let shown: Vec<_> = (tokens.iter())
        .map(|t| {
            let d = t.description.as_deref();
            let scan = t.allow_scan_file;
            (t.name.as_str(), d, t.enabled, t.role, t.tenants.len(), scan)
        })
        .collect();
    assert_eq!(
        shown,
        [
            (
                "a&b",
                Some("d1"),
                false,
                Some(Role::SecurityOfficer),
                1,
                Some(true)
            ),
            (
                "c",
                Some("d2"),
                true,
                Some(Role::Administrator),
                0,
                Some(false)
            ),
            ("e", None, true, None, 0, None),
        ]
    );
    assert_eq!(tokens[1].digest[..1], [0x05]);
}

#[test]
fn a_plain_token_after_a_bad_one_still_reports_duplicates() {
    // Token 1 is refused (bad Enabled) but its name and Value count; token 2 repeats both.
    let text = with_tokens(&[
        format!("<Name>a</Name><Value>{V1}</Value><Enabled>2</Enabled>"),
        token("a"),
    ]);
    let token2 = "ServerSettings/AuthSettings/AccessTokens/Token[2]";
    assert_eq!(
        errors(&text),
        [
            "ServerSettings/AuthSettings/AccessTokens/Token[1]/Enabled: Enabled must be 0 or 1, \
             found \"2\""
                .to_owned(),
            format!("{token2}/Name: duplicate name \"a\""),
            format!("{token2}/Value: duplicate value (same token as Token[1])"),
        ]
    );
}

fn with_tokens(tokens: &[String]) -> String {
    let tokens: String = tokens
        .iter()
        .map(|t| format!("<Token>{t}</Token>"))
        .collect();
    file(
        &format!("<AuthSettings><AccessTokens>{tokens}</AccessTokens></AuthSettings>"),
        "",
    )
}

#[test]
fn allow_scan_file_is_a_flag() {
    let t = "ServerSettings/AuthSettings/AccessTokens/Token[1]";
    for bad in ["yes", "2"] {
        let text = with_token(&format!(
            "{}<AllowScanFile>{bad}</AllowScanFile>",
            token("a")
        ));
        let rule = format!("{t}/AllowScanFile: AllowScanFile must be 0 or 1, found {bad:?}");
        assert_eq!(errors(&text), [rule]);
    }
    let twice = format!(
        "{}<AllowScanFile>1</AllowScanFile><AllowScanFile>1</AllowScanFile>",
        token("a")
    );
    let rule = format!("{t}/AllowScanFile: duplicate element <AllowScanFile>");
    assert_eq!(errors(&with_token(&twice)), [rule]);
}

#[test]
fn scanning_paths_are_absolute_and_normalised() {
    let paths = |inner: &str| file("", &format!("<ScanningPaths>{inner}</ScanningPaths>"));
    assert_eq!(ok(&file("", "")).gateway.scanning_paths, None);
    assert_eq!(ok(&paths("")).gateway.scanning_paths, Some(vec![]));
    let list = "<ScanningPath> /mnt//to_scan/ </ScanningPath><ScanningPath>/</ScanningPath>";
    let want = vec![PathBuf::from("/mnt/to_scan"), PathBuf::from("/")];
    assert_eq!(ok(&paths(list)).gateway.scanning_paths, Some(want));

    let p = "GatewaySettings/ScanningPaths/ScanningPath";
    let bad = "<ScanningPath>rel/dir</ScanningPath><ScanningPath>/a/../b</ScanningPath>\
               <ScanningPath/><ScanningPath>/a&#9;b</ScanningPath><Path>/x</Path>";
    assert_eq!(
        errors(&paths(bad)),
        [
            format!("{p}[1]: ScanningPath must be an absolute path, found \"rel/dir\""),
            format!("{p}[2]: ScanningPath must not contain `..`, found \"/a/../b\""),
            format!("{p}[3]: must not be empty"),
            format!("{p}[4]: ScanningPath must not contain control characters, found \"/a\\tb\""),
            "GatewaySettings/ScanningPaths/Path: unknown element <Path>".to_owned(),
        ]
    );
}

/// A well-formed file is read on the streaming path, and reads exactly as the general path reads
/// it: plain tokens, tokens with Tenants, RateLimit, entities and CDATA, and the blocks around them.
#[test]
fn streamed_tokens_read_as_the_general_path_reads_them() {
    let v2 = V1.replacen('A', "B", 1);
    let v3 = V1.replacen('A', "C", 1);
    let text = file(
        &format!(
            "<UseAccessToken>1</UseAccessToken><AuthSettings><UseAccessToken>1</UseAccessToken>\
             <AuthRequestField>X-Api-Key</AuthRequestField>\
             <UseBearerAuthScheme>0</UseBearerAuthScheme><AccessTokens>\n\
             <Token><Name> a&amp;b </Name><Value>{V1}</Value><Enabled>0</Enabled>\
             <Description>d1</Description><Role>Security Officer</Role>\
             <Tenants><Tenant>t</Tenant><Tenant>u</Tenant></Tenants></Token>\n\
             <!-- a comment --><Token>\n <Name> c </Name><Value> {v2} </Value><Enabled>1</Enabled>\
             <RateLimit><RequestsPerSecond>5</RequestsPerSecond></RateLimit></Token>\n\
             <Token><Name><![CDATA[e]]></Name><Value>{v3}</Value><Enabled>1</Enabled></Token>\n\
             </AccessTokens></AuthSettings>"
        )
        .replacen(
            "<UseAccessToken>1</UseAccessToken><AuthSettings>",
            "<AuthSettings>",
            1,
        ),
        "",
    );
    let general = general(&text, "t.xml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(general.auth.tokens.len(), 3);
    // A reload passes the last one's list: what it held is not read as this file's.
    let last = streaming(&text, Vec::new()).unwrap().auth.tokens;
    assert_eq!(last.len(), 3);
    assert_eq!(streaming(&text, last), Some(general));
}

/// Every fault in or around the tokens sends the file to the general path, which words the
/// errors as it always has; none of them is found only by the stream.
#[test]
fn a_faulty_file_is_reported_by_the_general_path() {
    let tokens = "ServerSettings/AuthSettings/AccessTokens";
    let good = |name: &str| format!("<Token>{}</Token>", token(name));
    let in_tokens = |inner: &str| {
        file(
            &format!("<AuthSettings><AccessTokens>{inner}</AccessTokens></AuthSettings>"),
            "",
        )
    };
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            in_tokens(&format!(
                "{}{}",
                good("a"),
                good("a").replace(V1, &V1.replacen('A', "B", 1))
            )),
            vec![format!("{tokens}/Token[2]/Name: duplicate name \"a\"")],
        ),
        (
            in_tokens(&format!("{}{}", good("a"), good("b"))),
            vec![format!(
                "{tokens}/Token[2]/Value: duplicate value (same token as Token[1])"
            )],
        ),
        (
            in_tokens(&format!("{}{}", good("a"), good("a"))),
            vec![
                format!("{tokens}/Token[2]/Name: duplicate name \"a\""),
                format!("{tokens}/Token[2]/Value: duplicate value (same token as Token[1])"),
            ],
        ),
        (
            in_tokens(&format!(
                "{}<Token><Name>b</Name><Value>{V1}</Value><Enabled>2</Enabled></Token>",
                good("a")
            )),
            vec![
                format!("{tokens}/Token[2]/Value: duplicate value (same token as Token[1])"),
                format!("{tokens}/Token[2]/Enabled: Enabled must be 0 or 1, found \"2\""),
            ],
        ),
        (
            in_tokens(&format!("{}<Token><Value>{V1}</Value></Token>", good("a"))),
            vec![
                format!("{tokens}/Token[2]: <Name> is mandatory"),
                format!("{tokens}/Token[2]: <Enabled> is mandatory"),
                format!("{tokens}/Token[2]/Value: duplicate value (same token as Token[1])"),
            ],
        ),
        (
            in_tokens("<Token><Name>a</Name><Value>short</Value><Enabled>1</Enabled><X/></Token>"),
            vec![
                format!("{tokens}/Token[1]/Value: Value must be 88 characters, found 5"),
                format!("{tokens}/Token[1]/X: unknown element <X>"),
            ],
        ),
        (
            in_tokens(&format!("{}<Tokens/>text", good("a"))),
            vec![
                format!("{tokens}: unexpected text in <AccessTokens>"),
                format!("{tokens}/Tokens: unknown element <Tokens>"),
            ],
        ),
        // An XML fault inside the third token: the path counts the two streamed before it.
        (
            in_tokens(&format!("{}{}<Token><Name>c</Value>", good("a"), good("b"))),
            vec![format!(
                "{tokens}/Token[3]/Name: ill-formed document: expected `</Name>`, but `</Value>` \
                 was found"
            )],
        ),
        // A second AccessTokens, whose tokens the general path never reads.
        (
            file(
                &format!(
                    "<AuthSettings><AccessTokens>{}</AccessTokens>\
                     <AccessTokens>{}</AccessTokens></AuthSettings>",
                    good("a"),
                    good("a")
                ),
                "",
            ),
            vec![
                "ServerSettings/AuthSettings/AccessTokens: duplicate element <AccessTokens>".into(),
            ],
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(streaming(&text, Vec::new()), None, "{text}");
        assert_eq!(errors(&text), expected, "{text}");
    }
}

/// A file cut anywhere, even between two whole tokens, is refused: the tokens already streamed
/// never make a result.
#[test]
fn a_half_written_file_is_refused_wherever_it_is_cut() {
    let text = with_tokens(&[
        token("a"),
        token("b").replace(V1, &V1.replacen('A', "B", 1)),
    ]);
    assert!(streaming(&text, Vec::new()).is_some());
    for cut in (1..text.trim_end().len()).step_by(7) {
        let half = &text[..cut];
        assert_eq!(streaming(half, Vec::new()), None, "{half}");
        assert!(parse(half, "t.xml").is_err(), "{half}");
    }
}

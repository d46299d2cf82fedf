//! UpstreamSettings and Upstream attributes: defaults, values, and every rule's exact message.

use std::time::Duration;

use crate::config::validate::parse;
use crate::config::{EngineOptions, Settings};

/// A file whose GatewaySettings holds `upstreams` (inside Upstreams) and `extra`.
fn file(upstreams: &str, extra: &str) -> String {
    format!(
        "<Configuration>\n<ServerSettings><ConnectionString>http://127.0.0.1:8080</ConnectionString>\
         </ServerSettings>\n<GatewaySettings><Upstreams>{upstreams}</Upstreams>{extra}\
         </GatewaySettings>\n</Configuration>\n"
    )
}

fn ok(text: &str) -> Settings {
    parse(text, "t.xml").unwrap_or_else(|e| panic!("{e}"))
}

/// `line:column: path: rule` of every error.
fn errors(text: &str) -> Vec<String> {
    match parse(text, "t.xml") {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

const ONE: &str = "<Upstream>http://127.0.0.1:9999</Upstream>";

#[test]
fn a_plain_upstream_list_gets_every_default() {
    let s = ok(&file(ONE, ""));
    let u = &s.gateway.upstream;
    assert_eq!(u.max_sessions, Some(10));
    assert_eq!(u.queue_timeout, Duration::from_millis(5000));
    assert_eq!(u.max_queue, 1024);
    assert_eq!(u.health_check_path, "/api/v3.0/basesdate");
    assert_eq!(u.health_check_interval, Some(Duration::from_millis(2000)));
    assert_eq!(u.retry_buffer_bytes, 64 * 1024);
    assert_eq!(u.engines, [EngineOptions::default()]);
    assert!(!u.legacy_max_upstream_connections);
}

#[test]
fn every_setting_and_attribute_is_read() {
    let ups = "<Upstream MaxSessions=\"4\" Weight=\"3\">http://127.0.0.1:1</Upstream>\
               <Upstream Tenants=\"acme, globex,acme\">http://127.0.0.1:2</Upstream>\
               <Upstream>/run/kav.sock</Upstream>";
    let extra = "<UpstreamSettings><MaxSessions>0</MaxSessions><QueueTimeoutMs>0</QueueTimeoutMs>\
                 <MaxQueue>7</MaxQueue><HealthCheckPath>/api/v3.0/version?x=1</HealthCheckPath>\
                 <HealthCheckIntervalMs>0</HealthCheckIntervalMs>\
                 <RetryBufferBytes>0</RetryBufferBytes></UpstreamSettings>";
    let s = ok(&file(ups, extra));
    let u = &s.gateway.upstream;
    assert_eq!(u.max_sessions, None);
    assert_eq!(u.queue_timeout, Duration::ZERO);
    assert_eq!(u.max_queue, 7);
    assert_eq!(u.health_check_path, "/api/v3.0/version?x=1");
    assert_eq!(u.health_check_interval, None);
    assert_eq!(u.retry_buffer_bytes, 0);
    assert_eq!(
        u.engines,
        [
            EngineOptions {
                max_sessions: Some(4),
                weight: 3,
                tenants: vec![],
            },
            EngineOptions {
                max_sessions: None,
                weight: 1,
                tenants: vec!["acme".into(), "globex".into()],
            },
            EngineOptions::default(),
        ]
    );
}

#[test]
fn the_deprecated_max_upstream_connections_sets_max_sessions_unless_it_is_given() {
    let legacy = "<MaxUpstreamConnections>3</MaxUpstreamConnections>";
    assert_eq!(
        ok(&file(ONE, legacy)).gateway.upstream.max_sessions,
        Some(3)
    );
    let both = format!("{legacy}<UpstreamSettings><MaxSessions>8</MaxSessions></UpstreamSettings>");
    let s = ok(&file(ONE, &both));
    assert_eq!(s.gateway.upstream.max_sessions, Some(8));
    assert!(s.gateway.upstream.legacy_max_upstream_connections);
}

#[test]
fn bad_settings_name_the_rule() {
    let extra =
        "<UpstreamSettings><MaxSessions>-1</MaxSessions><QueueTimeoutMs>5s</QueueTimeoutMs>\
                 <MaxQueue>1000001</MaxQueue><HealthCheckPath>api/v3.0/basesdate</HealthCheckPath>\
                 <HealthCheckIntervalMs>50</HealthCheckIntervalMs>\
                 <RetryBufferBytes>16777217</RetryBufferBytes><MaxSession>1</MaxSession>\
                 </UpstreamSettings>";
    let p = "GatewaySettings/UpstreamSettings";
    assert_eq!(
        errors(&file(ONE, extra)),
        [
            format!("t.xml:3:101: {p}/MaxSessions: MaxSessions must be a whole number from 0 to 4294967295, found \"-1\""),
            format!("t.xml:3:130: {p}/QueueTimeoutMs: QueueTimeoutMs must be a whole number from 0 to 4294967295, found \"5s\""),
            format!("t.xml:3:165: {p}/MaxQueue: MaxQueue must be a whole number from 0 to 1000000, found \"1000001\""),
            format!("t.xml:3:193: {p}/HealthCheckPath: HealthCheckPath must be an absolute path such as /api/v3.0/basesdate, found \"api/v3.0/basesdate\""),
            format!("t.xml:3:246: {p}/HealthCheckIntervalMs: HealthCheckIntervalMs must be 0 (no active checks) or from 100 to 3600000, found \"50\""),
            format!("t.xml:3:295: {p}/RetryBufferBytes: RetryBufferBytes must be a whole number from 0 to 16777216, found \"16777217\""),
            format!("t.xml:3:340: {p}/MaxSession: unknown element <MaxSession>"),
        ]
    );
}

#[test]
fn bad_attributes_name_the_upstream_and_the_rule() {
    let ups = "<Upstream MaxSessions=\"0\">http://127.0.0.1:1</Upstream>\
               <Upstream Weight=\"0\">http://127.0.0.1:2</Upstream>\
               <Upstream Weight=\"257\">http://127.0.0.1:3</Upstream>\
               <Upstream Tenants=\"acme,\">http://127.0.0.1:4</Upstream>\
               <Upstream Tenant=\"acme\">http://127.0.0.1:5</Upstream>";
    let p = "GatewaySettings/Upstreams/Upstream";
    assert_eq!(
        errors(&file(ups, "")),
        [
            format!("t.xml:3:29: {p}[1]: MaxSessions must be a whole number from 1 to 4294967295, found \"0\""),
            format!("t.xml:3:84: {p}[2]: Weight must be a whole number from 1 to 256, found \"0\""),
            format!("t.xml:3:134: {p}[3]: Weight must be a whole number from 1 to 256, found \"257\""),
            format!("t.xml:3:186: {p}[4]: Tenants: Tenant must be 1 to 100 characters, found 0"),
            format!("t.xml:3:241: {p}[5]: unknown attribute \"Tenant\" on <Upstream>; it takes MaxSessions, Weight and Tenants"),
        ]
    );
}

#[test]
fn tenant_routing_needs_a_default_group() {
    let ups = "<Upstream Tenants=\"acme\">http://127.0.0.1:1</Upstream>";
    assert_eq!(
        errors(&file(ups, "")),
        ["t.xml:3:18: GatewaySettings/Upstreams: at least one <Upstream> must have no Tenants \
          attribute: those engines serve every principal whose tenants have no engines of their own"]
    );
}

//! RateLimit and GatewaySettings/Limits: values, defaults, precedence and every rule's exact message.

use std::num::NonZeroU32;

use crate::config::validate::parse;
use crate::config::{LimitScope, Limits, Rate, Settings};

const V1: &str =
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==";
const V2: &str =
    "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA==";

/// A file with two tokens: `a` holding `a_extra` and `b` holding nothing, `gateway` in
/// GatewaySettings.
fn file(a_extra: &str, gateway: &str) -> String {
    format!(
        "<Configuration>\n<ServerSettings><ConnectionString>http://127.0.0.1:8080</ConnectionString>\n\
         <AuthSettings><UseAccessToken>1</UseAccessToken><AuthRequestField>Authorization</AuthRequestField>\
         <UseBearerAuthScheme>1</UseBearerAuthScheme><AccessTokens>\n\
         <Token><Name>a</Name><Value>{V1}</Value><Enabled>1</Enabled>{a_extra}</Token>\n\
         <Token><Name>b</Name><Value>{V2}</Value><Enabled>1</Enabled></Token>\n\
         </AccessTokens></AuthSettings></ServerSettings>\n\
         <GatewaySettings><Upstreams><Upstream>http://127.0.0.1:9999</Upstream></Upstreams>{gateway}\
         </GatewaySettings>\n</Configuration>\n"
    )
}

fn ok(text: &str) -> Settings {
    parse(text, "t.xml").unwrap_or_else(|e| panic!("{e}"))
}

fn errors(text: &str) -> Vec<String> {
    match parse(text, "t.xml") {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

#[test]
fn no_limits_anywhere_means_none_on_every_token() {
    let s = ok(&file("", ""));
    assert!(s.auth.tokens.iter().all(|t| t.limits.is_none()));
    assert_eq!(s.gateway.limits, Limits::default());
}

#[test]
fn every_child_is_read_and_burst_defaults_to_the_rate() {
    let own = "<RateLimit><RequestsPerSecond>5</RequestsPerSecond><MaxConcurrent>2</MaxConcurrent>\
               <DailyQuota>1000</DailyQuota><MonthlyQuota>20000</MonthlyQuota>\
               <DailyQuotaBytes>1048576</DailyQuotaBytes><LimitScope>replica</LimitScope></RateLimit>";
    let s = ok(&file(own, ""));
    let a = s.auth.tokens[0].limits.as_deref().unwrap();
    assert_eq!(
        *a,
        Limits {
            rate: Some(Rate {
                per_second: nz(5),
                burst: nz(5)
            }),
            max_concurrent: Some(nz(2)),
            daily_quota: Some(1000),
            monthly_quota: Some(20000),
            daily_quota_bytes: Some(1048576),
            scope: LimitScope::Replica,
        }
    );
    assert_eq!(
        a.summary(),
        "5/s burst 5, 2 concurrent, 1000/day, 20000/month, 1048576 B/day"
    );
    assert!(s.auth.tokens[1].limits.is_none());
}

#[test]
fn defaults_apply_to_tokens_without_their_own_and_an_empty_rate_limit_lifts_them() {
    let defaults = "<Limits><RequestsPerSecond>10</RequestsPerSecond><Burst>20</Burst></Limits>";
    let s = ok(&file("", defaults));
    let want = Rate {
        per_second: nz(10),
        burst: nz(20),
    };
    for t in &s.auth.tokens {
        assert_eq!(t.limits.as_deref().unwrap().rate, Some(want), "{}", t.name);
    }
    // The defaults are shared, not copied per token.
    let (a, b) = (&s.auth.tokens[0].limits, &s.auth.tokens[1].limits);
    assert!(std::sync::Arc::ptr_eq(
        a.as_ref().unwrap(),
        b.as_ref().unwrap()
    ));

    // An own RateLimit replaces the defaults as a whole; an empty one lifts them.
    let s = ok(&file(
        "<RateLimit><MaxConcurrent>3</MaxConcurrent></RateLimit>",
        defaults,
    ));
    let a = s.auth.tokens[0].limits.as_deref().unwrap();
    assert_eq!((a.rate, a.max_concurrent), (None, Some(nz(3))));
    let s = ok(&file("<RateLimit/>", defaults));
    assert!(s.auth.tokens[0].limits.is_none());
    assert!(s.auth.tokens[1].limits.is_some());
}

#[test]
fn bad_values_are_reported_with_their_position_and_rule() {
    let cases = [
        (
            "<RateLimit><RequestsPerSecond>5</RequestsPerSecond><Burst>0</Burst></RateLimit>",
            "t.xml:4:196: ServerSettings/AuthSettings/AccessTokens/Token[1]/RateLimit/Burst: Burst must be a whole number from 1 to 1000000, found \"0\"",
        ),
        (
            "<RateLimit><RequestsPerSecond>-5</RequestsPerSecond></RateLimit>",
            "t.xml:4:156: ServerSettings/AuthSettings/AccessTokens/Token[1]/RateLimit/RequestsPerSecond: RequestsPerSecond must be a whole number from 1 to 1000000, found \"-5\"",
        ),
        (
            "<RateLimit><RequestsPerSecond>fast</RequestsPerSecond></RateLimit>",
            "t.xml:4:156: ServerSettings/AuthSettings/AccessTokens/Token[1]/RateLimit/RequestsPerSecond: RequestsPerSecond must be a whole number from 1 to 1000000, found \"fast\"",
        ),
        (
            "<RateLimit><RequestsPerSecond>2.5</RequestsPerSecond></RateLimit>",
            "t.xml:4:156: ServerSettings/AuthSettings/AccessTokens/Token[1]/RateLimit/RequestsPerSecond: RequestsPerSecond must be a whole number from 1 to 1000000, found \"2.5\"",
        ),
        (
            "<RateLimit><MaxConcurrent>0</MaxConcurrent></RateLimit>",
            "t.xml:4:156: ServerSettings/AuthSettings/AccessTokens/Token[1]/RateLimit/MaxConcurrent: MaxConcurrent must be a whole number from 1 to 4294967295, found \"0\"",
        ),
        (
            "<RateLimit><DailyQuota>1e3</DailyQuota></RateLimit>",
            "t.xml:4:156: ServerSettings/AuthSettings/AccessTokens/Token[1]/RateLimit/DailyQuota: DailyQuota must be a whole number from 1 to 1000000000000, found \"1e3\"",
        ),
        (
            "<RateLimit><LimitScope>global</LimitScope></RateLimit>",
            "t.xml:4:156: ServerSettings/AuthSettings/AccessTokens/Token[1]/RateLimit/LimitScope: LimitScope must be replica or cluster, found \"global\"",
        ),
        (
            "<RateLimit><Burst>5</Burst></RateLimit>",
            "t.xml:4:145: ServerSettings/AuthSettings/AccessTokens/Token[1]/RateLimit: Burst needs RequestsPerSecond in the same element",
        ),
        (
            "<RateLimit><PerMinute>5</PerMinute></RateLimit>",
            "t.xml:4:156: ServerSettings/AuthSettings/AccessTokens/Token[1]/RateLimit/PerMinute: unknown element <PerMinute>",
        ),
        (
            "<RateLimit><LimitScope>cluster</LimitScope><DailyQuota>5</DailyQuota></RateLimit>",
            "t.xml:4:156: ServerSettings/AuthSettings/AccessTokens/Token[1]/RateLimit/LimitScope: LimitScope cluster needs a shared store: set GatewaySettings/Sessions/StateStore to a redis:// URL, or use replica",
        ),
    ];
    for (own, want) in cases {
        assert_eq!(errors(&file(own, "")), [want], "{own}");
    }
}

#[test]
fn bad_defaults_are_reported_under_gateway_settings() {
    let got = errors(&file("", "<Limits><Burst>x</Burst></Limits>"));
    assert_eq!(
        got,
        ["t.xml:7:91: GatewaySettings/Limits/Burst: Burst must be a whole number from 1 to 1000000, found \"x\""]
    );
    let got = errors(&file("", "<Limits><Burst>3</Burst></Limits>"));
    assert_eq!(
        got,
        ["t.xml:7:83: GatewaySettings/Limits: Burst needs RequestsPerSecond in the same element"]
    );
}

#[test]
fn cluster_scope_is_accepted_with_a_redis_store() {
    let gateway = "<Sessions><StateStore>redis://127.0.0.1:6379</StateStore></Sessions>\
                   <Limits><DailyQuota>100</DailyQuota><LimitScope>cluster</LimitScope></Limits>";
    let s = ok(&file("", gateway));
    let a = s.auth.tokens[0].limits.as_deref().unwrap();
    assert_eq!((a.daily_quota, a.scope), (Some(100), LimitScope::Cluster));
    assert_eq!(a.summary(), "100/day, cluster");
}

#[test]
fn connections_take_their_own_limits_or_the_defaults() {
    let connections = "<ApiConnections>\
        <Connection><Name>own</Name><ClientId>ClientIdOfOwn0001</ClientId><Role>SecurityOfficer</Role>\
        <Enabled>1</Enabled><RateLimit><DailyQuota>7</DailyQuota></RateLimit></Connection>\
        <Connection><Name>dflt</Name><ClientId>ClientIdOfDflt0001</ClientId><Role>SecurityOfficer</Role>\
        <Enabled>1</Enabled></Connection></ApiConnections>";
    let text = file("", "<Limits><MaxConcurrent>4</MaxConcurrent></Limits>")
        .replace("</AccessTokens>", &format!("</AccessTokens>{connections}"));
    let s = ok(&text);
    let summaries: Vec<String> = (s.auth.connections.iter())
        .map(|c| c.limits.as_deref().unwrap().summary())
        .collect();
    assert_eq!(summaries, ["7/day", "4 concurrent"]);
}

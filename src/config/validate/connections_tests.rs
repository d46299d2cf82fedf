//! Connection and Sessions validation: every rule with its exact message.

use crate::config::validate::parse;
use crate::config::{Role, Settings, StateStore};

const V1: &str =
    "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4/QA==";
const CID: &str = "AbCdEfGhIjKlMnOpQrStUv";

/// A file with UseAccessToken=1, `tokens` inside AccessTokens (omitted when empty), `conns` inside
/// ApiConnections and `gateway` inside GatewaySettings.
fn file(tokens: &str, conns: &str, gateway: &str) -> String {
    let tokens = match tokens {
        "" => String::new(),
        t => format!("<AccessTokens>{t}</AccessTokens>"),
    };
    format!(
        "<Configuration><ServerSettings><ConnectionString>http://127.0.0.1:8080</ConnectionString>\
         <AuthSettings><UseAccessToken>1</UseAccessToken><AuthRequestField>Authorization</AuthRequestField>\
         <UseBearerAuthScheme>1</UseBearerAuthScheme>{tokens}<ApiConnections>{conns}</ApiConnections>\
         </AuthSettings></ServerSettings><GatewaySettings>\
         <Upstreams><Upstream>http://127.0.0.1:9999</Upstream></Upstreams>{gateway}</GatewaySettings>\
         </Configuration>"
    )
}

fn conn(name: &str, client_id: &str, extra: &str) -> String {
    format!(
        "<Connection><Name>{name}</Name><ClientId>{client_id}</ClientId><Role>SecurityOfficer</Role>\
         <Enabled>1</Enabled>{extra}</Connection>"
    )
}

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

const C1: &str = "ServerSettings/AuthSettings/ApiConnections/Connection[1]";

#[test]
fn a_connection_alone_is_a_complete_auth_config() {
    let extra = "<Tenants><Tenant>acme</Tenant><RootWithoutTenants/></Tenants>\
                 <Description>SIEM</Description><NotBefore>2026-12-01T20:45:01Z</NotBefore>\
                 <Revoked>1</Revoked>";
    let s = ok(&file("", &conn("siem", CID, extra), ""));
    assert!(s.auth.tokens.is_empty());
    let c = &s.auth.connections[0];
    assert_eq!(c.name, "siem");
    assert_eq!(c.client_id, CID);
    assert_eq!(c.role, Role::SecurityOfficer);
    assert_eq!(c.tenants, ["acme"]);
    assert!(c.root_tenant);
    assert_eq!(c.description.as_deref(), Some("SIEM"));
    assert!(c.enabled);
    assert_eq!(c.not_before, 1_796_157_901);
    assert!(c.revoked);
    let plain = ok(&file("", &conn("siem", CID, ""), ""));
    let c = &plain.auth.connections[0];
    assert_eq!((c.not_before, c.revoked, c.root_tenant), (0, false, false));
    assert!(c.tenants.is_empty());
}

#[test]
fn no_token_and_no_connection_is_still_an_error() {
    let errs = errors(&file("", "", ""));
    assert_eq!(
        errs,
        ["ServerSettings/AuthSettings: UseAccessToken is 1 but <AccessTokens> is missing"]
    );
}

#[test]
fn each_connection_rule_has_its_message() {
    let cases: &[(&str, &str)] = &[
        (
            "<Connection><ClientId>AbCdEfGhIjKlMnOpQrStUv</ClientId><Role>SecurityOfficer</Role><Enabled>1</Enabled></Connection>",
            "<Name> is mandatory",
        ),
        (
            "<Connection><Name>a</Name><Role>SecurityOfficer</Role><Enabled>1</Enabled></Connection>",
            "<ClientId> is mandatory",
        ),
        (
            "<Connection><Name>a</Name><ClientId>AbCdEfGhIjKlMnOpQrStUv</ClientId><Enabled>1</Enabled></Connection>",
            "<Role> is mandatory",
        ),
        (
            "<Connection><Name>a</Name><ClientId>AbCdEfGhIjKlMnOpQrStUv</ClientId><Role>SecurityOfficer</Role></Connection>",
            "<Enabled> is mandatory",
        ),
    ];
    for (xml, rule) in cases {
        assert_eq!(
            errors(&file("", xml, "")),
            [format!("{C1}: {rule}")],
            "{xml}"
        );
    }
    let field = |name: &str, rule: &str| format!("{C1}/{name}: {rule}");
    assert_eq!(
        errors(&file("", &conn("a", "short", ""), "")),
        [field(
            "ClientId",
            r#"ClientId must be 16 to 64 characters of A-Z, a-z, 0-9, - and _, found "short""#
        )]
    );
    assert_eq!(
        errors(&file("", &conn("a", "AbCdEfGhIjKlMnOp/rStUv", ""), "")),
        [field(
            "ClientId",
            r#"ClientId must be 16 to 64 characters of A-Z, a-z, 0-9, - and _, found "AbCdEfGhIjKlMnOp/rStUv""#
        )]
    );
    assert_eq!(
        errors(&file(
            "",
            &conn("a", CID, "<NotBefore>yesterday</NotBefore>"),
            ""
        )),
        [field(
            "NotBefore",
            r#"NotBefore must be an RFC 3339 UTC time like 2026-12-01T20:45:01Z, found "yesterday""#
        )]
    );
    assert_eq!(
        errors(&file("", &conn("a", CID, "<Revoked>yes</Revoked>"), "")),
        [field("Revoked", r#"Revoked must be 0 or 1, found "yes""#)]
    );
    assert_eq!(
        errors(&file("", &conn("a", CID, "<Secret>x</Secret>"), "")),
        [field("Secret", "unknown element <Secret>")]
    );
    assert_eq!(
        errors(&file(
            "",
            &conn(
                "a",
                CID,
                "<Tenants><RootWithoutTenants>1</RootWithoutTenants></Tenants>"
            ),
            ""
        )),
        [field(
            "Tenants/RootWithoutTenants",
            "<RootWithoutTenants/> must be empty"
        )]
    );
    assert_eq!(
        errors(&file(
            "",
            &conn(
                "a",
                CID,
                "<Tenants><Tenant>acme</Tenant><Tenant>acme</Tenant></Tenants>"
            ),
            ""
        )),
        [field("Tenants/Tenant[2]", r#"duplicate tenant "acme""#)]
    );
}

#[test]
fn names_and_client_ids_are_unique_across_both_kinds() {
    let token = format!("<Token><Name>ci</Name><Value>{V1}</Value><Enabled>1</Enabled></Token>");
    let two = format!(
        "{}{}{}",
        conn("ci", CID, ""),
        conn("siem", CID, ""),
        conn("siem", "ZZZZZZZZZZZZZZZZZZZZZZ", "")
    );
    assert_eq!(
        errors(&file(&token, &two, "")),
        [
            format!(r#"{C1}/Name: duplicate name "ci" (a Token has it)"#),
            r#"ServerSettings/AuthSettings/ApiConnections/Connection[2]/ClientId: duplicate ClientId "AbCdEfGhIjKlMnOpQrStUv""#.to_owned(),
            r#"ServerSettings/AuthSettings/ApiConnections/Connection[3]/Name: duplicate name "siem""#.to_owned(),
        ]
    );
}

#[test]
fn sessions_default_to_mdr_lifetimes_and_check_their_values() {
    let s = ok(&file("", &conn("a", CID, ""), ""));
    let sessions = &s.gateway.sessions;
    assert_eq!(sessions.access_lifetime.as_secs(), 3600);
    assert_eq!(sessions.refresh_lifetime.as_secs(), 604_800);
    assert_eq!(sessions.console_refresh_lifetime.as_secs(), 86_400);
    assert_eq!(
        sessions.state_store,
        StateStore::Sqlite("scangate-state.db".into())
    );
    let set = "<Sessions><AccessTokenLifetimeSec>600</AccessTokenLifetimeSec>\
               <StateStore>sqlite:/var/lib/scangate/state.db</StateStore></Sessions>";
    let s = ok(&file("", &conn("a", CID, ""), set));
    assert_eq!(s.gateway.sessions.access_lifetime.as_secs(), 600);
    assert_eq!(
        s.gateway.sessions.state_store,
        StateStore::Sqlite("/var/lib/scangate/state.db".into())
    );
    let bad = "<Sessions><RefreshTokenLifetimeSec>59</RefreshTokenLifetimeSec>\
               <StateStore>redis://user:hunter2@cache:6379/x</StateStore><Ttl>1</Ttl></Sessions>";
    assert_eq!(
        errors(&file("", &conn("a", CID, ""), bad)),
        [
            "GatewaySettings/Sessions/RefreshTokenLifetimeSec: RefreshTokenLifetimeSec must be at least 60 seconds, found 59",
            "GatewaySettings/Sessions/StateStore: StateStore redis URL path must be a database number such as /0",
            "GatewaySettings/Sessions/Ttl: unknown element <Ttl>",
        ]
    );
}

#[test]
fn state_store_takes_a_redis_url_and_never_repeats_its_password() {
    let set = "<Sessions><StateStore>redis://app:hunter2@cache:6380/3</StateStore></Sessions>";
    let s = ok(&file("", &conn("a", CID, ""), set));
    let store = &s.gateway.sessions.state_store;
    assert_eq!(store.to_string(), "redis://***@cache:6380/3");
    assert!(!format!("{store:?}").contains("hunter2"));
    let StateStore::Redis(url) = store else {
        panic!("not redis: {store}");
    };
    assert_eq!(url.expose(), "redis://app:hunter2@cache:6380/3");
    let set = "<Sessions><StateStore>rediss://cache</StateStore></Sessions>";
    let s = ok(&file("", &conn("a", CID, ""), set));
    assert_eq!(
        s.gateway.sessions.state_store.to_string(),
        "rediss://cache:6379/0"
    );
    let bad = "<Sessions><StateStore>memcached://u:hunter2@cache</StateStore></Sessions>";
    assert_eq!(
        errors(&file("", &conn("a", CID, ""), bad)),
        [
            r#"GatewaySettings/Sessions/StateStore: StateStore must be sqlite:PATH or redis://[USER:PASSWORD@]HOST[:PORT][/DB] (rediss:// for TLS), found "memcached""#
        ]
    );
}

#[test]
fn not_before_round_trips_through_its_text_form() {
    use super::{format_time, parse_time};
    assert_eq!(format_time(1_796_157_901), "2026-12-01T20:45:01Z");
    assert_eq!(parse_time("2026-12-01T20:45:01Z"), Ok(1_796_157_901));
}

//! Edits as exact text: what each operation writes, and that it writes nothing else.

use super::*;
use crate::auth::token::TokenKey;
use crate::config::Role;

const T: EntryKind = EntryKind::Token;

fn value(token: &str) -> String {
    TokenKey::from_bytes(&[7; 32]).value(token)
}

fn new_token(name: &str) -> NewToken {
    NewToken {
        limits: None,
        name: name.into(),
        value: value(name),
        description: None,
        enabled: true,
        role: None,
        tenants: Vec::new(),
    }
}

fn doc(text: &str) -> Document<'_> {
    Document::read(text, "t.xml").unwrap()
}

/// A file around `auth`, the whole AuthSettings element, indented by two spaces a level.
fn file(auth: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<Configuration>\n  <ServerSettings>\n    \
         <ConnectionString>http://127.0.0.1:8080</ConnectionString>{auth}\n  </ServerSettings>\n  \
         <GatewaySettings><Upstreams><Upstream>http://127.0.0.1:1</Upstream></Upstreams>\
         </GatewaySettings>\n</Configuration>\n"
    )
}

fn valid(text: &str) {
    if let Err(e) = crate::config::validate::parse(text, "t.xml") {
        panic!("{e}\n{text}");
    }
}

#[test]
fn add_copies_the_layout_of_the_last_token() {
    let v = value("a");
    let before = file(&format!(
        "\n    <AuthSettings>\n      <AccessTokens>\n        <!-- first -->\n        <Token>\n          \
         <Name>a</Name>\n          <Value>{v}</Value>\n          <Enabled>1</Enabled>\n        \
         </Token>\n        <!-- end -->\n      </AccessTokens>\n    </AuthSettings>"
    ));
    let mut t = new_token("b");
    t.description = Some("R&D <ops>".into());
    t.enabled = false;
    t.role = Some(Role::SecurityOfficer);
    t.tenants = vec!["acme".into(), "globex".into()];
    let after = doc(&before).add(&t).unwrap();
    let added = format!(
        "\n        <Token>\n          <Name>b</Name>\n          <Value>{}</Value>\n          \
         <Description>R&amp;D &lt;ops&gt;</Description>\n          <Enabled>0</Enabled>\n          \
         <Role>SecurityOfficer</Role>\n          <Tenants>\n            <Tenant>acme</Tenant>\n            \
         <Tenant>globex</Tenant>\n          </Tenants>\n        </Token>",
        t.value
    );
    let at = before.find("</Token>").unwrap() + "</Token>".len();
    assert_eq!(after, format!("{}{added}{}", &before[..at], &before[at..]));
    valid(&after);
}

#[test]
fn add_copies_one_line_tokens_and_tabs() {
    let v = value("a");
    let before = format!(
        "<Configuration>\n\t<ServerSettings>\n\t\t<ConnectionString>http://127.0.0.1:8080</ConnectionString>\n\t\t\
         <AuthSettings>\n\t\t\t<AccessTokens>\n\t\t\t\t<Token><Name>a</Name><Value>{v}</Value><Enabled>1</Enabled></Token>\n\t\t\t\
         </AccessTokens>\n\t\t</AuthSettings>\n\t</ServerSettings>\n\t<GatewaySettings><Upstreams>\
         <Upstream>http://127.0.0.1:1</Upstream></Upstreams></GatewaySettings>\n</Configuration>"
    );
    let mut t = new_token("b");
    t.tenants = vec!["x".into()];
    let after = doc(&before).add(&t).unwrap();
    let added = format!(
        "\n\t\t\t\t<Token><Name>b</Name><Value>{}</Value><Enabled>1</Enabled><Tenants><Tenant>x</Tenant>\
         </Tenants></Token>",
        t.value
    );
    let at = before.find("</Token>").unwrap() + "</Token>".len();
    assert_eq!(after, format!("{}{added}{}", &before[..at], &before[at..]));
    valid(&after);
}

#[test]
fn add_fills_an_empty_access_tokens_in_every_spelling() {
    let t = new_token("a");
    let token = |indent: &str| {
        format!(
            "\n{indent}<Token>\n{indent}  <Name>a</Name>\n{indent}  <Value>{}</Value>\n{indent}  \
             <Enabled>1</Enabled>\n{indent}</Token>",
            t.value
        )
    };
    let auth = |tokens: &str| {
        file(&format!(
            "\n    <AuthSettings>\n      <UseAccessToken>0</UseAccessToken>\n      {tokens}\n    </AuthSettings>"
        ))
    };
    let filled = auth(&format!(
        "<AccessTokens>{}\n      </AccessTokens>",
        token("        ")
    ));
    for empty in [
        "<AccessTokens/>",
        "<AccessTokens />",
        "<AccessTokens></AccessTokens>",
        "<AccessTokens>\n      </AccessTokens>",
    ] {
        assert_eq!(doc(&auth(empty)).add(&t).unwrap(), filled, "{empty}");
    }
    valid(&filled);
    // Something other than whitespace inside stays before the new token.
    let commented = auth("<AccessTokens>\n        <!-- none yet -->\n      </AccessTokens>");
    let expected = auth(&format!(
        "<AccessTokens>\n        <!-- none yet -->{}\n      </AccessTokens>",
        token("        ")
    ));
    assert_eq!(doc(&commented).add(&t).unwrap(), expected);
}

#[test]
fn add_creates_the_missing_containers() {
    let t = new_token("a");
    let token = format!(
        "<Token>\n          <Name>a</Name>\n          <Value>{}</Value>\n          <Enabled>1</Enabled>\n        </Token>",
        t.value
    );
    let no_tokens =
        file("\n    <AuthSettings>\n      <UseAccessToken>0</UseAccessToken>\n    </AuthSettings>");
    let expected = file(&format!(
        "\n    <AuthSettings>\n      <UseAccessToken>0</UseAccessToken>\n      <AccessTokens>\n        \
         {token}\n      </AccessTokens>\n    </AuthSettings>"
    ));
    assert_eq!(doc(&no_tokens).add(&t).unwrap(), expected);

    let no_auth = file("");
    let expected = file(&format!(
        "\n    <AuthSettings>\n      <AccessTokens>\n        {token}\n      </AccessTokens>\n    </AuthSettings>"
    ));
    assert_eq!(doc(&no_auth).add(&t).unwrap(), expected);
    valid(&expected);
}

#[test]
fn add_then_remove_gives_back_every_fixture_byte_for_byte() {
    let fixtures = [
        include_str!("../../../tests/fixtures/valid/full.xml"),
        include_str!("../../../tests/fixtures/valid/kavhttpd.xml"),
        include_str!("../../../tests/fixtures/edit/preserve.xml"),
    ];
    for original in fixtures {
        let added = doc(original).add(&new_token("new")).unwrap();
        valid(&added);
        assert_eq!(doc(&added).remove(T, "new").unwrap(), original);
    }
}

#[test]
fn enable_and_disable_touch_only_the_flag() {
    let original = include_str!("../../../tests/fixtures/valid/full.xml");
    let d = doc(original);
    assert_eq!(d.set_enabled(T, "mail-gateway", true).unwrap(), None);
    let off = d.set_enabled(T, "mail-gateway", false).unwrap().unwrap();
    assert_eq!(
        off,
        original.replacen("<Enabled>1</Enabled>", "<Enabled>0</Enabled>", 1)
    );
    let on = doc(&off)
        .set_enabled(T, "mail-gateway", true)
        .unwrap()
        .unwrap();
    assert_eq!(on, original);
}

#[test]
fn rotate_keeps_the_whitespace_around_a_value() {
    let original = include_str!("../../../tests/fixtures/valid/full.xml");
    let old =
        "AgQGCAoMDhASFBYYGhweICIkJigqLC4wMjQ2ODo8PkBCREZISkxOUFJUVlhaXF5gYmRmaGpsbnBydHZ4enx+gA==";
    let new = value("rotated");
    let after = doc(original).set_value("管理者", &new).unwrap();
    assert_eq!(after, original.replacen(old, &new, 1));
    valid(&after);
}

#[test]
fn describe_replaces_adds_and_removes() {
    let original = include_str!("../../../tests/fixtures/valid/full.xml");
    let d = doc(original);
    let replaced = d.set_description(T, "mail-gateway", "a < b").unwrap();
    assert_eq!(
        replaced,
        original.replacen("Postfix relay, 2026-11 &amp; friends", "a &lt; b", 1)
    );
    // `soc` has none: it goes after Value, indented like Value.
    let added = d.set_description(T, "soc", "new").unwrap();
    let soc_value = "AwYJDA8SFRgbHiEkJyotMDM2OTw/QkVIS05RVFdaXWBjZmlsb3J1eHt+gYSHio2Qk5aZnJ+ipairrrG0t7q9wA==</Value>";
    assert_eq!(
        added,
        original.replacen(
            soc_value,
            &format!("{soc_value}\n          <Description>new</Description>"),
            1
        )
    );
    assert_eq!(doc(&added).set_description(T, "soc", "").unwrap(), original);
    // An empty `<Description></Description>` is filled in place.
    let filled = d.set_description(T, "管理者", "x").unwrap();
    assert_eq!(
        filled,
        original.replacen(
            "<Description></Description>",
            "<Description>x</Description>",
            1
        )
    );
}

#[test]
fn refusals_name_the_reason() {
    let original = include_str!("../../../tests/fixtures/valid/full.xml");
    let d = doc(original);
    let err = d.add(&new_token("soc")).unwrap_err();
    assert_eq!(err.to_string(), "a token named \"soc\" already exists");
    let mut same = new_token("other");
    same.value =
        "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4/QA=="
            .into();
    let err = d.add(&same).unwrap_err();
    assert_eq!(
        err.to_string(),
        "that token is already in the file, as \"mail-gateway\""
    );
    assert!(err.is_usage());
    let err = d.set_value("soc", &same.value).unwrap_err();
    assert_eq!(
        err.to_string(),
        "that token is already in the file, as \"mail-gateway\""
    );
    let err = d.remove(T, "nobody").unwrap_err();
    assert_eq!(err.to_string(), "no token named \"nobody\"");

    let twice = include_str!("../../../tests/fixtures/invalid/duplicate-name.xml");
    let err = doc(twice).remove(T, "ci").unwrap_err();
    assert_eq!(
        err.to_string(),
        "2 tokens are named \"ci\"; fix the file by hand first"
    );
    assert!(!err.is_usage());
}

#[test]
fn unreadable_text_reports_the_validator_errors() {
    let text = include_str!("../../../tests/fixtures/invalid/malformed-xml.xml");
    let err = Document::read(text, "m.xml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot edit: m.xml:16:29: ServerSettings/AuthSettings/AccessTokens/Token[2]/Name: \
         ill-formed document: expected `</Name>`, but `</Nmae>` was found"
    );
    let doctype = "<!DOCTYPE c [<!ENTITY x \"y\">]>\n<Configuration/>";
    let err = Document::read(doctype, "d.xml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot edit: d.xml:1:1: DTDs and entity declarations are not allowed"
    );
}

#[test]
fn names_are_matched_as_the_validator_reads_them() {
    let v = value("a");
    let text = file(&format!(
        "<AuthSettings><AccessTokens><Token><Name> R&amp;D<![CDATA[ ops]]>\n</Name><Value>{v}</Value>\
         <Enabled>1</Enabled></Token></AccessTokens></AuthSettings>"
    ));
    let off = doc(&text)
        .set_enabled(T, "R&D ops", false)
        .unwrap()
        .unwrap();
    assert_eq!(
        off,
        text.replace("<Enabled>1</Enabled>", "<Enabled>0</Enabled>")
    );
}

#[test]
fn crlf_and_a_byte_order_mark_are_kept() {
    let v = value("a");
    let text = format!(
        "\u{feff}<Configuration>\r\n  <ServerSettings>\r\n    <ConnectionString>http://127.0.0.1:8080</ConnectionString>\r\n    \
         <AuthSettings>\r\n      <AccessTokens>\r\n        <Token>\r\n          <Name>a</Name>\r\n          \
         <Value>{v}</Value>\r\n          <Enabled>1</Enabled>\r\n        </Token>\r\n      </AccessTokens>\r\n    \
         </AuthSettings>\r\n  </ServerSettings>\r\n  <GatewaySettings><Upstreams><Upstream>http://127.0.0.1:1</Upstream>\
         </Upstreams></GatewaySettings>\r\n</Configuration>\r\n"
    );
    let t = new_token("b");
    let after = doc(&text).add(&t).unwrap();
    let added = format!(
        "\r\n        <Token>\r\n          <Name>b</Name>\r\n          <Value>{}</Value>\r\n          \
         <Enabled>1</Enabled>\r\n        </Token>",
        t.value
    );
    let at = text.find("</Token>").unwrap() + "</Token>".len();
    assert_eq!(after, format!("{}{added}{}", &text[..at], &text[at..]));
    assert_eq!(doc(&after).remove(T, "b").unwrap(), text);
    assert_eq!(doc(&text).key_file(), PathBuf::from("scangate.key"));
}

#[test]
fn key_file_is_read_from_the_text() {
    let text = "<Configuration><GatewaySettings><TokenKeyFile> /etc/k&amp;.key </TokenKeyFile>\
                </GatewaySettings></Configuration>";
    assert_eq!(doc(text).key_file(), PathBuf::from("/etc/k&.key"));
}

#[path = "connection_tests.rs"]
mod connections;

#[test]
fn tenants_are_replaced_added_in_order_and_removed() {
    let v = value("a");
    let auth = format!(
        "\n    <AuthSettings>\n      <UseAccessToken>1</UseAccessToken>\n      \
         <AuthRequestField>Authorization</AuthRequestField>\n      \
         <UseBearerAuthScheme>1</UseBearerAuthScheme>\n      <AccessTokens>\n        \
         <Token>\n          <Name>a</Name>\n          <Value>{v}</Value>\n          \
         <Enabled>1</Enabled>\n          <!-- keep -->\n        </Token>\n      </AccessTokens>\n    \
         </AuthSettings>"
    );
    let text = file(&auth);
    let two = ["acme".to_owned(), "beta".to_owned()];
    let added = doc(&text).set_tenants(T, "a", &two, false).unwrap();
    valid(&added);
    assert!(
        added.contains(
            "<Enabled>1</Enabled>\n          <Tenants>\n            <Tenant>acme</Tenant>\n            \
             <Tenant>beta</Tenant>\n          </Tenants>\n          <!-- keep -->"
        ),
        "{added}"
    );
    let one = doc(&added).set_tenants(T, "a", &two[1..], false).unwrap();
    assert!(one.contains("<Tenants>\n            <Tenant>beta</Tenant>\n          </Tenants>"));
    assert!(!one.contains("acme"));
    let none = doc(&one).set_tenants(T, "a", &[], false).unwrap();
    assert_eq!(
        none, text,
        "removing the tenants restores the file byte for byte"
    );
}

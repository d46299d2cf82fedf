//! Connection edits as exact text: a new ApiConnections copies its neighbours' indentation,
//! comments stay, children are set in place or added at their place, and Names are one namespace
//! with the Tokens'.

use super::*;

const C: EntryKind = EntryKind::Connection;
/// 2026-01-01T00:00:00Z.
const JAN_1: u64 = 1_767_225_600;

fn connection(name: &str) -> NewConnection {
    NewConnection {
        limits: None,
        name: name.into(),
        client_id: format!("{:_<22}", name),
        role: Role::SecurityOfficer,
        tenants: Vec::new(),
        root_tenant: false,
        description: None,
        enabled: true,
        not_before: JAN_1,
    }
}

/// AuthSettings with a token `ci`, a comment after it, and `tail` before its end tag.
fn with_token(tail: &str) -> String {
    file(&format!(
        "\n    <AuthSettings>\n      <UseAccessToken>1</UseAccessToken>\n      \
         <AuthRequestField>Authorization</AuthRequestField>\n      \
         <UseBearerAuthScheme>1</UseBearerAuthScheme>\n      <AccessTokens>\n        \
         <Token><Name>ci</Name><Value>{}</Value><Enabled>1</Enabled></Token>\n      \
         </AccessTokens>{tail}\n      <!-- keep me -->\n    </AuthSettings>",
        value("ci")
    ))
}

#[test]
fn add_creates_api_connections_with_the_neighbours_indentation() {
    let before = with_token("");
    let mut c = connection("siem");
    c.tenants = vec!["acme".into()];
    c.root_tenant = true;
    c.description = Some("R&D".into());
    let after = doc(&before).add_connection(&c).unwrap();
    let added = "\n      <ApiConnections>\n        <Connection>\n          <Name>siem</Name>\n          \
         <ClientId>siem__________________</ClientId>\n          <Role>SecurityOfficer</Role>\n          \
         <Tenants>\n            <Tenant>acme</Tenant>\n            <RootWithoutTenants/>\n          \
         </Tenants>\n          <Description>R&amp;D</Description>\n          <Enabled>1</Enabled>\n          \
         <NotBefore>2026-01-01T00:00:00Z</NotBefore>\n          <Revoked>0</Revoked>\n        \
         </Connection>\n      </ApiConnections>";
    assert_eq!(after, with_token(added));
    valid(&after);

    // The second copies the first's layout; the comment is still where it was.
    let second = doc(&after).add_connection(&connection("soar")).unwrap();
    let at = after.find("</Connection>").unwrap() + "</Connection>".len();
    let more = "\n        <Connection>\n          <Name>soar</Name>\n          \
         <ClientId>soar__________________</ClientId>\n          <Role>SecurityOfficer</Role>\n          \
         <Enabled>1</Enabled>\n          <NotBefore>2026-01-01T00:00:00Z</NotBefore>\n          \
         <Revoked>0</Revoked>\n        </Connection>";
    assert_eq!(second, format!("{}{more}{}", &after[..at], &after[at..]));
    assert!(second.contains("-->\n    </AuthSettings>"));
    valid(&second);
    // Removing both gives back the file with an empty ApiConnections.
    let removed = doc(&second).remove(C, "soar").unwrap();
    assert_eq!(removed, after);
}

#[test]
fn one_line_connections_and_tabs_are_copied() {
    let before = "<Configuration>\n\t<ServerSettings>\n\t\t<ConnectionString>http://127.0.0.1:8080</ConnectionString>\n\t\t\
         <AuthSettings>\n\t\t\t<ApiConnections>\n\t\t\t\t<Connection><Name>a</Name><ClientId>a_____________________</ClientId>\
         <Role>Administrator</Role><Enabled>1</Enabled></Connection>\n\t\t\t</ApiConnections>\n\t\t</AuthSettings>\n\t\
         </ServerSettings>\n\t<GatewaySettings><Upstreams><Upstream>http://127.0.0.1:1</Upstream></Upstreams>\
         </GatewaySettings>\n</Configuration>";
    let mut c = connection("b");
    c.root_tenant = true;
    let after = doc(before).add_connection(&c).unwrap();
    let added = "\n\t\t\t\t<Connection><Name>b</Name><ClientId>b_____________________</ClientId>\
         <Role>SecurityOfficer</Role><Tenants><RootWithoutTenants/></Tenants><Enabled>1</Enabled>\
         <NotBefore>2026-01-01T00:00:00Z</NotBefore><Revoked>0</Revoked></Connection>";
    let at = before.find("</Connection>").unwrap() + "</Connection>".len();
    assert_eq!(after, format!("{}{added}{}", &before[..at], &before[at..]));
    valid(&after);
}

#[test]
fn set_replaces_children_in_place_and_adds_missing_ones_in_order() {
    let before = doc(&with_token(""))
        .add_connection(&connection("siem"))
        .unwrap();
    let d = doc(&before);
    let moved = d
        .set(
            C,
            "siem",
            &[("NotBefore", "2026-02-01T00:00:00Z"), ("Revoked", "1")],
        )
        .unwrap();
    assert_eq!(
        moved,
        before
            .replace("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z")
            .replace("<Revoked>0</Revoked>", "<Revoked>1</Revoked>")
    );
    assert_eq!(d.child_text(C, "siem", "Revoked").unwrap(), Some("0"));
    assert_eq!(d.child_text(C, "siem", "Description").unwrap(), None);

    // A hand-written connection without NotBefore and Revoked gets both, after Enabled.
    let bare = before
        .replace(
            "\n          <NotBefore>2026-01-01T00:00:00Z</NotBefore>",
            "",
        )
        .replace("\n          <Revoked>0</Revoked>", "");
    let set = doc(&bare)
        .set(
            C,
            "siem",
            &[("NotBefore", "2026-02-01T00:00:00Z"), ("Revoked", "1")],
        )
        .unwrap();
    assert_eq!(
        set,
        before
            .replace("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z")
            .replace("<Revoked>0</Revoked>", "<Revoked>1</Revoked>")
    );
    let off = doc(&before).set_enabled(C, "siem", false).unwrap().unwrap();
    assert_eq!(
        off,
        before.replace(
            "<Enabled>1</Enabled>\n          <NotBefore>",
            "<Enabled>0</Enabled>\n          <NotBefore>"
        )
    );
    assert_eq!(doc(&before).set_enabled(C, "siem", true).unwrap(), None);
    let described = doc(&before).set_description(C, "siem", "SIEM").unwrap();
    assert!(described
        .contains("</Role>\n          <Description>SIEM</Description>\n          <Enabled>"));
}

#[test]
fn names_are_one_namespace_across_tokens_and_connections() {
    let before = doc(&with_token(""))
        .add_connection(&connection("siem"))
        .unwrap();
    let d = doc(&before);
    let err = d.add_connection(&connection("ci")).unwrap_err();
    assert_eq!(err.to_string(), "a token named \"ci\" already exists");
    assert!(err.is_usage());
    let err = d.add_connection(&connection("siem")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "a connection named \"siem\" already exists"
    );
    let err = d.add(&new_token("siem")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "a connection named \"siem\" already exists"
    );
    // Each edit finds only its own kind.
    let err = d.remove(C, "ci").unwrap_err();
    assert_eq!(err.to_string(), "no connection named \"ci\"");
    assert!(err.is_usage());
    let err = d.set_enabled(T, "siem", false).unwrap_err();
    assert_eq!(err.to_string(), "no token named \"siem\"");
    // A Connection outside ApiConnections is not one.
    let stray = with_token("\n      <Connection><Name>x</Name></Connection>");
    assert_eq!(doc(&stray).count(C), 0);
}

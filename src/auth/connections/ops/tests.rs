//! The connection operations against a config in a temp folder: what each writes, what it
//! returns, and what it refuses.

use std::path::{Path, PathBuf};

use super::*;
use crate::auth::jwt::{self, Kind};
use crate::auth::sessions::{SessionStore, SqliteStore};
use crate::config::load;

/// 2026-01-01T00:00:00Z.
const NOW: u64 = 1_767_225_600;
const KEY: [u8; 32] = [42; 32];

/// A folder with a config (one token `ci`, UseAccessToken 1) and, when `with_key`, its key file.
fn folder(with_key: bool) -> (tempfile::TempDir, PathBuf) {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let key = TokenKey::from_bytes(&KEY);
    if with_key {
        let b64 = base64::engine::general_purpose::STANDARD.encode(KEY);
        std::fs::write(dir.path().join("scangate.key"), format!("{b64}\n")).unwrap();
    }
    let text = format!(
        "<Configuration>\n  <ServerSettings>\n    <ConnectionString>http://127.0.0.1:1</ConnectionString>\n    \
         <AuthSettings>\n      <UseAccessToken>1</UseAccessToken>\n      \
         <AuthRequestField>Authorization</AuthRequestField>\n      <UseBearerAuthScheme>1</UseBearerAuthScheme>\n      \
         <AccessTokens>\n        <Token><Name>ci</Name><Value>{}</Value><Enabled>1</Enabled></Token>\n      \
         </AccessTokens>\n    </AuthSettings>\n  </ServerSettings>\n  <GatewaySettings>\n    \
         <Upstreams><Upstream>http://127.0.0.1:2</Upstream></Upstreams>\n    <AdminConnectionString>off</AdminConnectionString>\n  \
         </GatewaySettings>\n</Configuration>\n",
        key.value("Ci-Token-1")
    );
    let path = dir.path().join("scangate.xml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn spec(name: &str) -> Spec {
    Spec {
        limits: None,
        name: name.into(),
        role: Role::SecurityOfficer,
        tenants: vec!["acme".into()],
        root_tenant: true,
        description: Some("SIEM".into()),
    }
}

fn entry(config: &Path, name: &str) -> crate::config::ConnectionEntry {
    let (_, settings) = load::read_settings(config).unwrap();
    let found = settings
        .auth
        .connections
        .into_iter()
        .find(|c| c.name == name);
    found.expect("the connection is in the file")
}

/// The claims of a console refresh token, verified with the test key.
fn claims(token: &str, at: u64) -> jwt::Claims {
    let keys = JwtKeys::derive(&TokenKey::from_bytes(&KEY));
    jwt::verify(&keys, Kind::Refresh, token, at).unwrap()
}

#[test]
fn add_writes_the_connection_and_returns_a_token_that_begins_at_not_before() {
    let (_dir, config) = folder(true);
    let added = add(&config, &spec("siem"), NOW).unwrap();
    let token = &added.token;
    assert_eq!(token.name, "siem");
    assert_eq!(token.client_id.len(), 22);
    assert!(token
        .client_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(token.expires_at, NOW + 86_400);
    assert_eq!(added.key_created, None);
    assert!(added.use_access_token);
    let c = claims(&token.refresh_token, NOW);
    assert_eq!(
        (c.sub.as_str(), c.fit, c.iat, c.exp),
        (&*token.client_id, NOW, NOW, NOW + 86_400)
    );

    let e = entry(&config, "siem");
    assert_eq!(e.client_id, token.client_id);
    assert_eq!(
        (e.role, e.enabled, e.revoked),
        (Role::SecurityOfficer, true, false)
    );
    assert_eq!((e.tenants, e.root_tenant), (vec!["acme".to_owned()], true));
    assert_eq!(
        (e.description.as_deref(), e.not_before),
        (Some("SIEM"), NOW)
    );
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(!text.contains(&token.refresh_token));

    // Another connection gets another ClientId.
    let other = add(&config, &spec("soar"), NOW).unwrap();
    assert_ne!(other.token.client_id, token.client_id);
    let json = serde_json::to_value(&other.token).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "name": "soar", "client_id": other.token.client_id,
            "refresh_token": other.token.refresh_token, "expires_at": "2026-01-02T00:00:00Z",
        })
    );
    assert_eq!(
        format!("{:?}", other.token),
        format!(
            "ConsoleToken {{ name: \"soar\", client_id: {:?}, expires_at: {}, .. }}",
            other.token.client_id,
            NOW + 86_400
        )
    );
}

#[test]
fn add_takes_the_lifetime_from_the_config_and_creates_a_missing_key_only_when_nothing_needs_it() {
    let (dir, config) = folder(false);
    let err = add(&config, &spec("siem"), NOW).unwrap_err();
    assert!(
        matches!(err, ConnectionError::KeyMissing { held: 1, .. }),
        "{err}"
    );
    assert!(!err.is_usage());
    // Without the token, nothing depends on a key: add creates one.
    let text = std::fs::read_to_string(&config).unwrap();
    let start = text.find("<Token>").unwrap();
    let end = text.find("</Token>").unwrap() + "</Token>".len();
    let sessions =
        "<Sessions><ConsoleRefreshTokenLifetimeSec>600</ConsoleRefreshTokenLifetimeSec></Sessions>";
    let text = format!("{}{}", &text[..start], &text[end..]).replace(
        "</GatewaySettings>",
        &format!("{sessions}</GatewaySettings>"),
    );
    std::fs::write(&config, text).unwrap();
    let added = add(&config, &spec("siem"), NOW).unwrap();
    let key_path = dir.path().join("scangate.key");
    assert_eq!(added.key_created.as_deref(), Some(key_path.as_path()));
    assert_eq!(added.token.expires_at, NOW + 600);
    let key = TokenKey::read(&key_path).unwrap();
    let keys = JwtKeys::derive(&key);
    assert!(jwt::verify(&keys, Kind::Refresh, &added.token.refresh_token, NOW).is_ok());
    // The connection's tokens are signed with that key now: a lost key is not replaced.
    std::fs::remove_file(&key_path).unwrap();
    let err = add(&config, &spec("soar"), NOW).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: token key file is missing, but the config already holds 1 token(s) and \
             connection(s) that depend on it; restore that key file rather than create a new one",
            key_path.display()
        )
    );
    assert!(!key_path.exists());
}

#[test]
fn bad_inputs_are_refused_naming_the_field_and_nothing_is_written() {
    let (_dir, config) = folder(true);
    let before = std::fs::read_to_string(&config).unwrap();
    let cases: [(Spec, Field, &str); 6] = [
        (
            spec(""),
            Field::Name,
            "Name must be 1 to 40 characters, found 0",
        ),
        (
            spec(" x"),
            Field::Name,
            "Name must not start or end with whitespace",
        ),
        (
            Spec {
                limits: None,
                tenants: vec!["a,b".into()],
                ..spec("x")
            },
            Field::Tenant,
            "Tenant must not contain a comma: X-Scangate-Tenants separates tenants with commas",
        ),
        (
            Spec {
                limits: None,
                tenants: vec!["a".into(), "a".into()],
                ..spec("x")
            },
            Field::Tenant,
            "duplicate tenant \"a\"",
        ),
        (
            Spec {
                limits: None,
                description: Some("d".repeat(1001)),
                ..spec("x")
            },
            Field::Description,
            "Description must be at most 1000 characters, found 1001",
        ),
        (
            Spec {
                limits: None,
                tenants: vec![String::new()],
                ..spec("x")
            },
            Field::Tenant,
            "Tenant must be 1 to 100 characters, found 0",
        ),
    ];
    for (input, field, rule) in cases {
        let err = add(&config, &input, NOW).unwrap_err();
        assert_eq!(err.to_string(), rule);
        assert!(matches!(err, ConnectionError::BadInput { field: f, .. } if f == field));
        assert!(err.is_usage());
    }
    let err = add(&config, &spec("ci"), NOW).unwrap_err();
    assert_eq!(err.to_string(), "a token named \"ci\" already exists");
    assert!(err.is_usage());
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);
    for err in [
        refresh(&config, "nobody", NOW).unwrap_err(),
        revoke(&config, "nobody", NOW).unwrap_err(),
        set_enabled(&config, "nobody", true).unwrap_err(),
        remove(&config, "nobody").unwrap_err(),
    ] {
        assert_eq!(err.to_string(), "no connection named \"nobody\"");
        assert!(err.is_usage());
    }
}

#[test]
fn refresh_and_revoke_move_not_before_past_every_family() {
    let (_dir, config) = folder(true);
    let first = add(&config, &spec("siem"), NOW).unwrap().token;
    // In the same second as the add: one second later, so the add's family dies too.
    revoke(&config, "siem", NOW).unwrap();
    let e = entry(&config, "siem");
    assert_eq!((e.not_before, e.revoked, e.enabled), (NOW + 1, true, true));
    assert!(claims(&first.refresh_token, NOW).fit < e.not_before);

    let later = NOW + 100;
    let refreshed = refresh(&config, "siem", later).unwrap();
    let e = entry(&config, "siem");
    assert_eq!((e.not_before, e.revoked), (later, false));
    assert!(refreshed.enabled);
    let token = &refreshed.token;
    assert_eq!(
        (token.client_id.as_str(), token.expires_at),
        (first.client_id.as_str(), later + 86_400)
    );
    assert_eq!(claims(&token.refresh_token, later).fit, later);

    // Disabled: the refresh still happens, and says the token waits for an enable.
    set_enabled(&config, "siem", false).unwrap();
    let again = refresh(&config, "siem", later).unwrap();
    assert!(!again.enabled);
    assert_eq!(claims(&again.token.refresh_token, later).fit, later + 1);
    assert_eq!(entry(&config, "siem").not_before, later + 1);
}

#[test]
fn next_not_before_is_now_unless_that_would_not_move_it() {
    assert_eq!(next_not_before(None, NOW), NOW);
    assert_eq!(next_not_before(Some(NOW - 1), NOW), NOW);
    assert_eq!(next_not_before(Some(NOW), NOW), NOW + 1);
    assert_eq!(next_not_before(Some(NOW + 5), NOW), NOW + 6);
}

#[test]
fn enable_disable_and_remove() {
    let (_dir, config) = folder(true);
    add(&config, &spec("siem"), NOW).unwrap();
    let unchanged = std::fs::read_to_string(&config).unwrap();
    let toggled = set_enabled(&config, "siem", true).unwrap();
    assert_eq!(
        toggled,
        Toggled {
            changed: false,
            revoked: false
        }
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), unchanged);
    let toggled = set_enabled(&config, "siem", false).unwrap();
    assert_eq!(
        toggled,
        Toggled {
            changed: true,
            revoked: false
        }
    );
    assert!(!entry(&config, "siem").enabled);
    revoke(&config, "siem", NOW).unwrap();
    let toggled = set_enabled(&config, "siem", true).unwrap();
    assert_eq!(
        toggled,
        Toggled {
            changed: true,
            revoked: true
        }
    );
    remove(&config, "siem").unwrap();
    let (_, settings) = load::read_settings(&config).unwrap();
    assert!(settings.auth.connections.is_empty());
    assert_eq!(settings.auth.tokens.len(), 1);
}

#[test]
fn status_follows_revoked_then_enabled_then_the_last_exchange() {
    let (_dir, config) = folder(true);
    add(&config, &spec("siem"), NOW).unwrap();
    let mut e = entry(&config, "siem");
    assert_eq!(status(&e, Some(None)), Status::PendingActivation);
    assert_eq!(status(&e, Some(Some(NOW - 1))), Status::PendingActivation);
    assert_eq!(status(&e, Some(Some(NOW))), Status::Active);
    assert_eq!(status(&e, None), Status::Enabled);
    e.enabled = false;
    assert_eq!(status(&e, Some(Some(NOW))), Status::Disabled);
    e.revoked = true;
    assert_eq!(status(&e, Some(Some(NOW))), Status::Revoked);
    e.enabled = true;
    assert_eq!(status(&e, None), Status::Revoked);
    let words: Vec<&str> = [
        Status::PendingActivation,
        Status::Active,
        Status::Disabled,
        Status::Revoked,
        Status::Enabled,
    ]
    .iter()
    .map(|s| s.as_str())
    .collect();
    assert_eq!(
        words,
        [
            "pending activation",
            "active",
            "disabled",
            "revoked",
            "enabled"
        ]
    );
}

#[tokio::test]
async fn list_reads_exchanges_from_the_store_and_warns_when_it_cannot() {
    let (dir, config) = folder(true);
    let empty = list(&config).unwrap();
    assert!(empty.connections.is_empty() && empty.store_warning.is_none());
    let now = crate::config::validate::connections::now_secs();
    let siem = add(&config, &spec("siem"), now).unwrap().token;
    add(&config, &spec("soar"), now).unwrap();
    // No store file yet: nothing was exchanged, and no file is created.
    let listing = list(&config).unwrap();
    let store_path = dir.path().join("scangate-state.db");
    assert!(!store_path.exists());
    assert!(listing.store_warning.is_none());
    assert_eq!(listing.connections[0].status, Status::PendingActivation);
    assert_eq!(listing.connections[0].last_exchange, None);

    let store = SqliteStore::open(&store_path).unwrap();
    store
        .record_exchange(&siem.client_id, now + 5)
        .await
        .unwrap();
    let listing = list(&config).unwrap();
    assert!(listing.store_warning.is_none());
    let json = serde_json::to_value(&listing.connections).unwrap();
    assert_eq!(json[0]["status"], "active");
    assert_eq!(json[0]["last_exchange"], format_time(now + 5));
    assert_eq!(json[1]["status"], "pending activation");
    assert_eq!(json[1]["last_exchange"], serde_json::Value::Null);
    assert_eq!(
        json[0],
        serde_json::json!({
            "name": "siem", "client_id": siem.client_id, "role": "SecurityOfficer",
            "tenants": ["acme"], "root_tenant": true, "description": "SIEM", "enabled": true,
            "status": "active", "last_exchange": format_time(now + 5),
            "not_before": format_time(now), "limits": "-",
        })
    );
    // With no gateway holding the store open (its WAL files gone), it still reads.
    drop(store);
    let listing = list(&config).unwrap();
    assert!(
        listing.store_warning.is_none(),
        "{:?}",
        listing.store_warning
    );
    assert_eq!(listing.connections[0].status, Status::Active);

    // A store that is not SQLite: a warning naming it, and statuses that do not guess.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", store_path.display()));
    }
    std::fs::write(&store_path, vec![0x55; 4096]).unwrap();
    let listing = list(&config).unwrap();
    let warning = listing.store_warning.expect("a warning").to_string();
    assert!(
        warning.starts_with(&format!(
            "{}: cannot open session state store",
            store_path.display()
        )),
        "{warning}"
    );
    assert_eq!(listing.connections[0].status, Status::Enabled);
    assert_eq!(listing.connections[0].last_exchange, None);
}

#[test]
fn a_refresh_in_the_same_second_as_the_add_returns_once_its_family_has_begun() {
    let (_dir, config) = folder(true);
    let now = crate::config::validate::connections::now_secs();
    add(&config, &spec("siem"), now).unwrap();
    let refreshed = refresh(&config, "siem", now).unwrap();
    let fit = claims(&refreshed.token.refresh_token, now).fit;
    assert_eq!(fit, now + 1);
    assert!(crate::config::validate::connections::now_secs() >= fit);
}

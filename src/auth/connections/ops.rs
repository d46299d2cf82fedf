//! The API-connection operations: add, list, refresh, enable, disable, remove, revoke. `scangate
//! connection …` runs them and the web console will call the same functions.
//!
//! They live beside the runtime view ([`super`]) rather than in `config::edit` because they
//! compose three things the config module should not know about: the config edit itself, minting
//! console refresh tokens ([`crate::auth::exchange`]) and reading exchange times from the session
//! store ([`crate::auth::sessions`]).
//!
//! Every change follows the token commands' file discipline: under the config's lock, read, edit
//! ([`Document`]), validate as `serve` would, and replace the file atomically ([`ConfigFile`]). A
//! refused change writes nothing. A refresh token is returned once, to be shown once; it is never
//! written anywhere. Every operation blocks (file lock, fsync), so async callers run them on a
//! blocking thread.

mod list;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

pub use list::{list, status, Listed, Listing, Status};

use crate::auth::exchange::console_refresh_token;
use crate::auth::jwt::{self, JwtKeys};
use crate::auth::token::{KeyError, TokenKey};
use crate::config::edit::{
    check_new_name, ConfigFile, Document, EditError, EntryKind, NewConnection,
};
use crate::config::perms::Access;
use crate::config::validate::connections::{format_time, parse_time};
use crate::config::validate::{check_description, check_tenant};
use crate::config::{LoadError, Role, Settings};

const CONNECTION: EntryKind = EntryKind::Connection;

/// What `add` makes: everything a Connection holds but its generated ClientId and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// `Name`: 1–40 characters, unique across Tokens and Connections (MDR's `author_name`).
    pub name: String,
    /// `Role`. The CLI defaults to SecurityOfficer, the least privilege.
    pub role: Role,
    /// Named tenants: 1–100 characters each, no comma, no duplicates.
    pub tenants: Vec<String>,
    /// MDR's "Root without tenants".
    pub root_tenant: bool,
    /// Up to 1000 characters; empty or `None` writes none.
    pub description: Option<String>,
    /// `RateLimit`: its own limits; `None` writes none (the defaults apply).
    pub limits: Option<crate::config::Limits>,
}

/// A console refresh token just issued. Shown once, never stored. Serialises to the `--json`
/// contract `{"name","client_id","refresh_token","expires_at"}`, `expires_at` in RFC 3339.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct ConsoleToken {
    /// The connection's Name.
    pub name: String,
    /// Its ClientId: the `{client_id}` of `POST /api/v1/{client_id}/session/confirm`.
    pub client_id: String,
    /// The refresh token, to exchange there once.
    pub refresh_token: String,
    /// Unix seconds when it expires (`ConsoleRefreshTokenLifetimeSec` after it was issued).
    #[serde(serialize_with = "rfc3339")]
    pub expires_at: u64,
}

impl fmt::Debug for ConsoleToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleToken")
            .field("name", &self.name)
            .field("client_id", &self.client_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Unix seconds as `NotBefore`'s RFC 3339 text.
pub(super) fn rfc3339<S: Serializer>(secs: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(*secs))
}

/// What `add` did.
#[derive(Debug)]
pub struct Added {
    /// The first refresh token.
    pub token: ConsoleToken,
    /// The key file, when `add` had to create it.
    pub key_created: Option<PathBuf>,
    /// `UseAccessToken`: with 0, no request is checked, the connection's tokens included.
    pub use_access_token: bool,
}

/// What `refresh` did.
#[derive(Debug)]
pub struct Refreshed {
    /// The new refresh token; every older family is dead once the gateway reloads.
    pub token: ConsoleToken,
    /// `Enabled`: a disabled connection's new token works only once it is enabled.
    pub enabled: bool,
}

/// What `enable` or `disable` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Toggled {
    /// False when `Enabled` already had that value: nothing was written.
    pub changed: bool,
    /// `Revoked`: enabling does not bring back a revoked connection's tokens.
    pub revoked: bool,
}

/// Which input was refused, so a caller can name its own field (`--tenant`, a form field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The Name.
    Name,
    /// A tenant.
    Tenant,
    /// The description.
    Description,
}

/// Why an operation did nothing.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// An input breaks the config's rule; the text is the rule.
    #[error("{rule}")]
    BadInput {
        /// Which input.
        field: Field,
        /// The rule it broke, in the validator's words.
        rule: String,
    },
    /// The edit was refused or could not be written (unknown or taken name, invalid result, I/O).
    #[error(transparent)]
    Edit(#[from] EditError),
    /// The config could not be read or is invalid (`list`).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The key file is unreadable or malformed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// `add` found no key file, but the config holds Tokens hashed or Connections signed with
    /// some key: a new key would break every one of them.
    #[error(
        "{}: token key file is missing, but the config already holds {held} token(s) and \
         connection(s) that depend on it; restore that key file rather than create a new one",
        path.display()
    )]
    KeyMissing {
        /// The key file.
        path: PathBuf,
        /// How many Tokens and Connections the config holds.
        held: usize,
    },
}

impl ConnectionError {
    /// The caller's input is at fault (bad value, unknown or taken name): the CLI exits 64.
    pub fn is_usage(&self) -> bool {
        match self {
            ConnectionError::BadInput { .. } => true,
            ConnectionError::Edit(e) => e.is_usage(),
            _ => false,
        }
    }
}

fn bad(field: Field) -> impl FnOnce(String) -> ConnectionError {
    move |rule| ConnectionError::BadInput { field, rule }
}

/// Checks `spec` as the validator will, so a bad input is named as such rather than as a file
/// that would not validate.
fn check(spec: &Spec) -> Result<(), ConnectionError> {
    check_new_name(&spec.name).map_err(bad(Field::Name))?;
    for (i, tenant) in spec.tenants.iter().enumerate() {
        check_tenant(tenant).map_err(bad(Field::Tenant))?;
        if spec.tenants[..i].contains(tenant) {
            return Err(bad(Field::Tenant)(format!("duplicate tenant {tenant:?}")));
        }
    }
    if let Some(description) = &spec.description {
        check_description(description).map_err(bad(Field::Description))?;
    }
    Ok(())
}

/// Adds a Connection with a new ClientId, enabled, whose first token family begins at `now`, and
/// returns its first refresh token. Creates the key file (mode 0600) when it does not exist and
/// the config holds nothing that depends on one.
pub fn add(config: &Path, spec: &Spec, now: u64) -> Result<Added, ConnectionError> {
    check(spec)?;
    let file = ConfigFile::open(config)?;
    let label = config.display().to_string();
    let doc = Document::read(file.text(), &label)?;
    let key_path = file.resolve(&doc.key_file());
    let (key, new_key) = TokenKey::read_or_new(&key_path)?;
    let held = doc.count(EntryKind::Token) + doc.count(CONNECTION);
    if new_key.is_some() && held > 0 {
        return Err(ConnectionError::KeyMissing {
            path: key_path,
            held,
        });
    }
    let connection = NewConnection {
        name: spec.name.clone(),
        client_id: jwt::new_id(),
        role: spec.role,
        tenants: spec.tenants.clone(),
        root_tenant: spec.root_tenant,
        description: spec.description.clone().filter(|d| !d.is_empty()),
        enabled: true,
        not_before: now,
        limits: spec.limits.clone(),
    };
    let text = doc.add_connection(&connection)?;
    let settings = file.validate(&text)?;
    if let Some(new_key) = &new_key {
        // Readable by whoever may read the config, as `token add` makes it (see config::perms).
        let like = std::fs::metadata(config).map(|m| Access::of(&m)).ok();
        new_key.write(&key_path, like)?;
    }
    file.replace(&text)?;
    let token = issue(&key, &settings, &connection.name, connection.client_id, now);
    Ok(Added {
        token,
        key_created: new_key.map(|_| key_path),
        use_access_token: settings.auth.use_access_token,
    })
}

/// MDR's console "Refresh": moves `NotBefore` to now, so every token family issued before dies
/// at the next reload, clears `Revoked`, and returns a refresh token that begins a new family at
/// that same `NotBefore`. Returns once the clock has reached it (a second or two at most, after
/// another refresh or a revoke in the same second).
pub fn refresh(config: &Path, name: &str, now: u64) -> Result<Refreshed, ConnectionError> {
    let mut begun = None;
    let settings = ConfigFile::edit(config, |file, doc| {
        let client_id = doc.child_text(CONNECTION, name, "ClientId")?;
        let key = TokenKey::read(&file.resolve(&doc.key_file()))?;
        let (not_before, text) = move_not_before(doc, name, now, "0")?;
        begun = Some((key, client_id.unwrap_or_default().to_owned(), not_before));
        Ok::<_, ConnectionError>(Some(text))
    })?
    .expect("refresh always writes");
    let (key, client_id, not_before) = begun.expect("set by the edit");
    wait_until(not_before);
    let enabled = (settings.auth.connections.iter()).any(|c| c.name == name && c.enabled);
    let token = issue(&key, &settings, name, client_id, not_before);
    Ok(Refreshed { token, enabled })
}

/// Kills every token family the connection issued (at the next reload) and marks it revoked,
/// until a `refresh` issues a new one. It stays enabled.
pub fn revoke(config: &Path, name: &str, now: u64) -> Result<(), ConnectionError> {
    ConfigFile::edit(config, |_, doc| {
        Ok::<_, ConnectionError>(Some(move_not_before(doc, name, now, "1")?.1))
    })?;
    Ok(())
}

/// Sets `Enabled`. A disabled connection's tokens are refused from the next reload on, and work
/// again once it is enabled (unless a `revoke` or `refresh` came in between).
pub fn set_enabled(config: &Path, name: &str, enabled: bool) -> Result<Toggled, ConnectionError> {
    let mut revoked = false;
    let written = ConfigFile::edit(config, |_, doc| {
        revoked = doc.child_text(CONNECTION, name, "Revoked")? == Some("1");
        Ok::<_, ConnectionError>(doc.set_enabled(CONNECTION, name, enabled)?)
    })?;
    Ok(Toggled {
        changed: written.is_some(),
        revoked,
    })
}

/// Sets the Connection's description; an empty one removes it.
pub fn describe(config: &Path, name: &str, description: &str) -> Result<(), ConnectionError> {
    check_description(description).map_err(bad(Field::Description))?;
    ConfigFile::edit(config, |_, doc| {
        Ok::<_, ConnectionError>(Some(doc.set_description(CONNECTION, name, description)?))
    })?;
    Ok(())
}

/// Sets the Connection's Role. Access tokens already issued carry no role: the gateway reads it
/// from the connection at each request, so the change applies at the next reload.
pub fn set_role(config: &Path, name: &str, role: Role) -> Result<(), ConnectionError> {
    ConfigFile::edit(config, |_, doc| {
        Ok::<_, ConnectionError>(Some(doc.set(
            CONNECTION,
            name,
            &[("Role", role.as_str())],
        )?))
    })?;
    Ok(())
}

/// Replaces the Connection's tenants and "Root without tenants". Like the role, the gateway reads
/// them from the connection at each request, so the change applies at the next reload.
pub fn set_tenants(
    config: &Path,
    name: &str,
    tenants: &[String],
    root_tenant: bool,
) -> Result<(), ConnectionError> {
    for (i, tenant) in tenants.iter().enumerate() {
        check_tenant(tenant).map_err(bad(Field::Tenant))?;
        if tenants[..i].contains(tenant) {
            return Err(bad(Field::Tenant)(format!("duplicate tenant {tenant:?}")));
        }
    }
    ConfigFile::edit(config, |_, doc| {
        let text = doc.set_tenants(CONNECTION, name, tenants, root_tenant)?;
        Ok::<_, ConnectionError>(Some(text))
    })?;
    Ok(())
}

/// Removes the Connection. Its tokens are refused from the next reload on.
pub fn remove(config: &Path, name: &str) -> Result<(), ConnectionError> {
    ConfigFile::edit(config, |_, doc| {
        Ok::<_, ConnectionError>(Some(doc.remove(CONNECTION, name)?))
    })?;
    Ok(())
}

/// The text with `NotBefore` moved to [`next_not_before`] and `Revoked` set to `revoked`.
fn move_not_before(
    doc: &Document<'_>,
    name: &str,
    now: u64,
    revoked: &str,
) -> Result<(u64, String), EditError> {
    let old = doc.child_text(CONNECTION, name, "NotBefore")?;
    let not_before = next_not_before(old.and_then(|t| parse_time(t).ok()), now);
    let children = [
        ("NotBefore", &*format_time(not_before)),
        ("Revoked", revoked),
    ];
    Ok((not_before, doc.set(CONNECTION, name, &children)?))
}

/// The `NotBefore` that kills every family begun so far: now, or one second past the current one
/// when that is not earlier (two commands in one second). Each family's `fit` is the `NotBefore`
/// written when it began, so a strictly later one is before every one of them.
pub fn next_not_before(current: Option<u64>, now: u64) -> u64 {
    match current {
        Some(current) if current >= now => current + 1,
        _ => now,
    }
}

/// The longest [`wait_until`] sleeps: a `NotBefore` further ahead was written by hand.
const MAX_WAIT: Duration = Duration::from_secs(3);

/// Sleeps until the clock reaches `at`, when that is at most [`MAX_WAIT`] away. A refresh in the
/// same second as an earlier refresh or revoke begins its family a second or two ahead
/// ([`next_not_before`]); handing the token out only once that moment has come keeps its `iat`
/// out of the future and makes its first exchange count as one since `NotBefore` in `list`.
fn wait_until(at: u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    if let Some(ahead) = Duration::from_secs(at).checked_sub(now) {
        if ahead <= MAX_WAIT {
            std::thread::sleep(ahead);
        }
    }
}

/// A console refresh token beginning a family at `begins` (the connection's `NotBefore`).
fn issue(
    key: &TokenKey,
    settings: &Settings,
    name: &str,
    client_id: String,
    begins: u64,
) -> ConsoleToken {
    let keys = JwtKeys::derive(key);
    let lifetime = settings.gateway.sessions.console_refresh_lifetime;
    let (refresh_token, claims) = console_refresh_token(&keys, &client_id, lifetime, begins);
    ConsoleToken {
        name: name.to_owned(),
        client_id,
        refresh_token,
        expires_at: claims.exp,
    }
}

#[cfg(test)]
mod tests;

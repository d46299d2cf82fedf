//! `list`: every Connection with its status and last exchange, from the config and, read-only,
//! the session store. Never a token: the file holds none.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use super::{rfc3339, ConnectionError};
use crate::auth::sessions::{RedisStore, SessionStore, SqliteStore, StoreError};
use crate::config::{load, ConnectionEntry, Role, StateStore};

/// Where a connection stands, as MDR's console shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Status {
    /// Enabled, and no refresh token has been exchanged since `NotBefore`: the token `add` or
    /// `refresh` printed is still waiting to be used.
    #[serde(rename = "pending activation")]
    PendingActivation,
    /// Enabled, and exchanged since `NotBefore`.
    #[serde(rename = "active")]
    Active,
    /// `Enabled` is 0.
    #[serde(rename = "disabled")]
    Disabled,
    /// `revoke` killed its tokens; a `refresh` issues new ones.
    #[serde(rename = "revoked")]
    Revoked,
    /// Enabled, but the session store could not be read, so whether it is active is unknown.
    #[serde(rename = "enabled")]
    Enabled,
}

impl Status {
    /// The words `connection list` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::PendingActivation => "pending activation",
            Status::Active => "active",
            Status::Disabled => "disabled",
            Status::Revoked => "revoked",
            Status::Enabled => "enabled",
        }
    }
}

/// A connection's status. `last_exchange`: `Some(None)` when the store knows of no exchange, `None`
/// when the store could not be read. Revoked comes first: enabling does not undo a revoke.
pub fn status(entry: &ConnectionEntry, last_exchange: Option<Option<u64>>) -> Status {
    if entry.revoked {
        return Status::Revoked;
    }
    if !entry.enabled {
        return Status::Disabled;
    }
    match last_exchange {
        None => Status::Enabled,
        Some(Some(at)) if at >= entry.not_before => Status::Active,
        Some(_) => Status::PendingActivation,
    }
}

/// One connection as `list` shows it. Serialises to the `connection list --json` objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listed {
    /// `Name`.
    pub name: String,
    /// `ClientId`.
    pub client_id: String,
    /// `Role`.
    #[serde(serialize_with = "role")]
    pub role: Role,
    /// Named tenants.
    pub tenants: Vec<String>,
    /// MDR's "Root without tenants".
    pub root_tenant: bool,
    /// `Description`.
    pub description: Option<String>,
    /// `Enabled`.
    pub enabled: bool,
    /// See [`Status`].
    pub status: Status,
    /// The last exchange by any of its clients (unix seconds), when the store has one.
    #[serde(serialize_with = "maybe_rfc3339")]
    pub last_exchange: Option<u64>,
    /// `NotBefore`: families begun before it are dead.
    #[serde(serialize_with = "rfc3339")]
    pub not_before: u64,
    /// The limits in force (its own `RateLimit`, else the defaults); `-` when unlimited.
    pub limits: String,
}

fn role<S: serde::Serializer>(role: &Role, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(role.as_str())
}

fn maybe_rfc3339<S: serde::Serializer>(secs: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match secs {
        Some(secs) => rfc3339(secs, s),
        None => s.serialize_none(),
    }
}

/// What `list` found.
#[derive(Debug)]
pub struct Listing {
    /// Every Connection, in file order.
    pub connections: Vec<Listed>,
    /// Why the session store could not be read, when it could not: the statuses then say
    /// `enabled` rather than `active` or `pending activation`.
    pub store_warning: Option<StoreError>,
}

/// Reads the config and, when it has connections, their last exchanges from the session store
/// (read-only, so a running gateway keeps writing). A missing store file means no exchange yet.
pub fn list(config: &Path) -> Result<Listing, ConnectionError> {
    let (_, settings) = load::read_settings(config)?;
    let entries = &settings.auth.connections;
    let store = &settings.gateway.sessions.state_store;
    let read = if entries.is_empty() {
        Ok(HashMap::new())
    } else {
        last_exchanges(store)
    };
    let (exchanges, store_warning) = match read {
        Ok(exchanges) => (Some(exchanges), None),
        Err(e) => (None, Some(e)),
    };
    let connections = entries
        .iter()
        .map(|e| {
            let last = exchanges.as_ref().map(|x| x.get(&e.client_id).copied());
            Listed {
                name: e.name.to_string(),
                client_id: e.client_id.clone(),
                role: e.role,
                tenants: e.tenants.clone(),
                root_tenant: e.root_tenant,
                description: e.description.clone(),
                enabled: e.enabled,
                status: status(e, last),
                last_exchange: last.flatten(),
                not_before: e.not_before,
                limits: (e.limits.as_deref())
                    .map_or_else(|| "-".to_owned(), crate::config::Limits::summary),
            }
        })
        .collect();
    Ok(Listing {
        connections,
        store_warning,
    })
}

/// Client ID → last exchange, from the store; empty when there is no SQLite file yet.
fn last_exchanges(store: &StateStore) -> Result<HashMap<String, u64>, StoreError> {
    let path = match store {
        StateStore::Sqlite(path) => path,
        StateStore::Redis(url) => {
            let store = RedisStore::new(url)?;
            let rows = crate::auth::sessions::block_on(store.last_exchanges())?;
            return Ok(rows.into_iter().collect());
        }
    };
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        _ => {}
    }
    let store = SqliteStore::open_read_only(path)?;
    let rows = crate::auth::sessions::block_on(store.last_exchanges())?;
    Ok(rows.into_iter().collect())
}

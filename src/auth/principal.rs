//! The principal: who a request is, whatever credential it came with.
//!
//! Authentication turns a request into a [`Principal`] or a failure. Everything after it (role
//! policy, the identity headers sent upstream, limits, metrics and the access log) reads only the
//! principal, never the credential, so a new kind of credential needs no change past
//! authentication.

use std::sync::Arc;

use http::HeaderValue;

use super::connections::ConnectionRecord;
use super::store::{SharedRecord, TokenStats};
use crate::config::{Limits, Role};

/// An authenticated caller. Cheap to clone: a pointer to the record the credential resolved to,
/// which already holds the header values and counters built at reload time.
#[derive(Clone)]
pub enum Principal {
    /// A static `Token` from the config (Scan Engine's model).
    Token(SharedRecord),
    /// An API connection whose access token checked out (MDR's model).
    Connection(Arc<ConnectionRecord>),
}

impl Principal {
    /// The credential's Name: logged, counted and forwarded instead of any secret.
    pub fn name(&self) -> &str {
        match self {
            Principal::Token(t) => &t.name,
            Principal::Connection(c) => &c.name,
        }
    }

    /// The role; `None` means full access.
    pub fn role(&self) -> Option<Role> {
        match self {
            Principal::Token(t) => t.role(),
            Principal::Connection(c) => Some(c.role),
        }
    }

    /// The `X-Scangate-Token-Name` value: a token's is built on its first request, a
    /// connection's once per reload.
    pub fn name_header(&self) -> &HeaderValue {
        match self {
            Principal::Token(t) => t.name_header(),
            Principal::Connection(c) => &c.name_header,
        }
    }

    /// The `X-Scangate-Tenants` value, when the principal has named tenants.
    pub fn tenants_header(&self) -> Option<&HeaderValue> {
        match self {
            Principal::Token(t) => t.tenants_header(),
            Principal::Connection(c) => c.tenants_header.as_ref(),
        }
    }

    /// MDR's "Root without tenants" is in the principal's scope (connections only; a Token has
    /// no such value).
    pub fn root_tenant(&self) -> bool {
        match self {
            Principal::Token(_) => false,
            Principal::Connection(c) => c.root_tenant,
        }
    }

    /// `AllowScanFile`: a Token's own grant or refusal of `scanfile`, over its role's default.
    /// A connection has only its role.
    pub fn allow_scan_file(&self) -> Option<bool> {
        match self {
            Principal::Token(t) => t.allow_scan_file(),
            Principal::Connection(_) => None,
        }
    }

    /// The limits in force for it; `None` = unlimited.
    pub fn limits(&self) -> Option<&Arc<Limits>> {
        match self {
            Principal::Token(t) => t.limits(),
            Principal::Connection(c) => c.limits.as_ref(),
        }
    }

    /// Live counters, kept across reloads by name.
    pub fn stats(&self) -> &TokenStats {
        match self {
            Principal::Token(t) => &t.stats,
            Principal::Connection(c) => &c.stats,
        }
    }
}

impl std::fmt::Debug for Principal {
    /// The name and kind only: a record also holds its digest key, which no log may show.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Token(t) => write!(f, "Principal::Token({:?})", &*t.name),
            Principal::Connection(c) => write!(f, "Principal::Connection({:?})", &*c.name),
        }
    }
}

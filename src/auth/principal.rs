//! The principal: who a request is, whatever credential it came with.
//!
//! Authentication turns a request into a [`Principal`] or a failure. Everything after it (role
//! policy, the identity headers sent upstream, limits, metrics and the access log) reads only the
//! principal, never the credential, so a new kind of credential needs no change past
//! authentication.

use std::sync::Arc;

use http::HeaderValue;

use super::store::{TokenRecord, TokenStats};
use crate::config::Role;

/// An authenticated caller. Cheap to clone: a pointer to the record the credential resolved to,
/// which already holds the header values and counters built at reload time.
#[derive(Clone)]
pub enum Principal {
    /// A static `Token` from the config (Scan Engine's model).
    Token(Arc<TokenRecord>),
}

impl Principal {
    /// The credential's Name: logged, counted and forwarded instead of any secret.
    pub fn name(&self) -> &str {
        match self {
            Principal::Token(t) => &t.name,
        }
    }

    /// The role; `None` means full access.
    pub fn role(&self) -> Option<Role> {
        match self {
            Principal::Token(t) => t.role,
        }
    }

    /// The `X-Scangate-Token-Name` value, built once per reload.
    pub fn name_header(&self) -> &HeaderValue {
        match self {
            Principal::Token(t) => &t.name_header,
        }
    }

    /// The `X-Scangate-Tenants` value, when the principal has named tenants.
    pub fn tenants_header(&self) -> Option<&HeaderValue> {
        match self {
            Principal::Token(t) => t.tenants_header.as_ref(),
        }
    }

    /// Live counters, kept across reloads by name.
    pub fn stats(&self) -> &TokenStats {
        match self {
            Principal::Token(t) => &t.stats,
        }
    }
}

impl std::fmt::Debug for Principal {
    /// The name and kind only: a record also holds its digest key, which no log may show.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Token(t) => write!(f, "Principal::Token({:?})", &*t.name),
        }
    }
}

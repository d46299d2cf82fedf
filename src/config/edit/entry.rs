//! What the edits add: the two kinds of credential entries (a `Token`, a `Connection`), their
//! children in the order scangate writes them, and the [`Node`] each new one is written as.

use std::fmt;

use super::layout::Node;
use crate::config::validate::connections::{format_time, ROOT_TENANT};
use crate::config::{LimitScope, Limits, Role};

/// The children of a Token in the order scangate writes them (and Scan Engine documents them).
const TOKEN_ORDER: &[&str] = &["Name", "Value", "Description", "Enabled", "Role", "Tenants"];

/// The children of a Connection in the order scangate writes them.
const CONNECTION_ORDER: &[&str] = &[
    "Name",
    "ClientId",
    "Role",
    "Tenants",
    "Description",
    "Enabled",
    "NotBefore",
    "Revoked",
];

/// Which credential element an edit is about. Both kinds share one namespace of Names, since a
/// Name is what logs, metrics and the upstream see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// `AuthSettings/AccessTokens/Token`: a static token's digest.
    Token,
    /// `AuthSettings/ApiConnections/Connection`: an MDR API connection.
    Connection,
}

impl EntryKind {
    /// The element's tag.
    pub fn element(self) -> &'static str {
        match self {
            EntryKind::Token => "Token",
            EntryKind::Connection => "Connection",
        }
    }

    /// The tag of the `AuthSettings` child that holds the elements.
    pub fn container(self) -> &'static str {
        match self {
            EntryKind::Token => "AccessTokens",
            EntryKind::Connection => "ApiConnections",
        }
    }

    /// The children in the order scangate writes them; a missing child is added at its place.
    pub(super) fn order(self) -> &'static [&'static str] {
        match self {
            EntryKind::Token => TOKEN_ORDER,
            EntryKind::Connection => CONNECTION_ORDER,
        }
    }
}

/// The word messages use: `token`, `connection`.
impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EntryKind::Token => "token",
            EntryKind::Connection => "connection",
        })
    }
}

/// A Token element to write. Holds the `Value` (a digest), never a token; its Debug leaves the
/// Value out.
#[derive(Clone, PartialEq, Eq)]
pub struct NewToken {
    /// `Name`, already checked against the validator's rule.
    pub name: String,
    /// `Value`: base64 of the keyed digest.
    pub value: String,
    /// `Description`, if any.
    pub description: Option<String>,
    /// `Enabled`.
    pub enabled: bool,
    /// `Role`, if any; written in scangate's spelling.
    pub role: Option<Role>,
    /// `Tenants/Tenant`, in order; none writes no `Tenants`.
    pub tenants: Vec<String>,
    /// `RateLimit`, if any.
    pub limits: Option<Limits>,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("name", &self.name)
            .field("value", &format_args!("<redacted>"))
            .field("description", &self.description)
            .field("enabled", &self.enabled)
            .field("role", &self.role)
            .field("tenants", &self.tenants)
            .finish()
    }
}

/// A Connection element to write. Holds no secret: its clients' tokens are signed, not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConnection {
    /// `Name`, already checked against the validator's rule.
    pub name: String,
    /// `ClientId`: 22 base64url characters of 128 random bits.
    pub client_id: String,
    /// `Role`, written in scangate's spelling.
    pub role: Role,
    /// `Tenants/Tenant`, in order.
    pub tenants: Vec<String>,
    /// `Tenants/RootWithoutTenants`: MDR's "Root without tenants".
    pub root_tenant: bool,
    /// `Description`, if any.
    pub description: Option<String>,
    /// `Enabled`.
    pub enabled: bool,
    /// `NotBefore`, unix seconds: the issue time of the first refresh token.
    pub not_before: u64,
    /// `RateLimit`, if any.
    pub limits: Option<Limits>,
}

/// A new element and how to write it where it goes.
pub(super) trait NewEntry {
    /// Token or Connection.
    fn kind(&self) -> EntryKind;
    /// The element with `inner` before each child and `outer` before its end tag; `deepest` is the
    /// separator inside `Tenants`.
    fn node(&self, deepest: &str, inner: String, outer: String) -> Node<'_>;
}

/// `Tenants` with one child per tenant; `None` when there is nothing to write.
pub(super) fn tenants<'a>(
    names: &'a [String],
    root: bool,
    deepest: &str,
    outer: &str,
) -> Option<Node<'a>> {
    let mut children: Vec<Node<'a>> = names.iter().map(|t| Node::leaf("Tenant", t)).collect();
    if root {
        children.push(Node::Empty(ROOT_TENANT));
    }
    (!children.is_empty()).then(|| Node::Parent {
        name: "Tenants",
        children,
        inner: deepest.to_owned(),
        outer: outer.to_owned(),
    })
}

/// `RateLimit` with one child per limit set; `None` without limits. An empty `Limits` writes
/// `<RateLimit/>`, which lifts the defaults for the principal.
pub(super) fn rate_limit<'a>(
    limits: Option<&Limits>,
    deepest: &str,
    outer: &str,
) -> Option<Node<'a>> {
    let limits = limits?;
    if limits.is_empty() {
        return Some(Node::Empty("RateLimit"));
    }
    let mut children = Vec::new();
    let mut put = |name: &'a str, value: Option<String>| {
        if let Some(v) = value {
            children.push(Node::Leaf(name, v.into()));
        }
    };
    put(
        "RequestsPerSecond",
        limits.rate.map(|r| r.per_second.to_string()),
    );
    put("Burst", limits.rate.map(|r| r.burst.to_string()));
    put(
        "MaxConcurrent",
        limits.max_concurrent.map(|n| n.to_string()),
    );
    put("DailyQuota", limits.daily_quota.map(|n| n.to_string()));
    put("MonthlyQuota", limits.monthly_quota.map(|n| n.to_string()));
    put(
        "DailyQuotaBytes",
        limits.daily_quota_bytes.map(|n| n.to_string()),
    );
    if limits.scope != LimitScope::Replica {
        put("LimitScope", Some(limits.scope.as_str().to_owned()));
    }
    Some(Node::Parent {
        name: "RateLimit",
        children,
        inner: deepest.to_owned(),
        outer: outer.to_owned(),
    })
}

fn flag(on: bool) -> &'static str {
    if on {
        "1"
    } else {
        "0"
    }
}

impl NewEntry for NewToken {
    fn kind(&self) -> EntryKind {
        EntryKind::Token
    }

    fn node(&self, deepest: &str, inner: String, outer: String) -> Node<'_> {
        let mut children = vec![
            Node::leaf("Name", &self.name),
            Node::leaf("Value", &self.value),
        ];
        if let Some(description) = &self.description {
            children.push(Node::leaf("Description", description));
        }
        children.push(Node::leaf("Enabled", flag(self.enabled)));
        if let Some(role) = self.role {
            children.push(Node::leaf("Role", role.as_str()));
        }
        children.extend(tenants(&self.tenants, false, deepest, &inner));
        children.extend(rate_limit(self.limits.as_ref(), deepest, &inner));
        Node::Parent {
            name: "Token",
            children,
            inner,
            outer,
        }
    }
}

impl NewEntry for NewConnection {
    fn kind(&self) -> EntryKind {
        EntryKind::Connection
    }

    fn node(&self, deepest: &str, inner: String, outer: String) -> Node<'_> {
        let mut children = vec![
            Node::leaf("Name", &self.name),
            Node::leaf("ClientId", &self.client_id),
            Node::leaf("Role", self.role.as_str()),
        ];
        children.extend(tenants(&self.tenants, self.root_tenant, deepest, &inner));
        if let Some(description) = &self.description {
            children.push(Node::leaf("Description", description));
        }
        children.push(Node::leaf("Enabled", flag(self.enabled)));
        children.push(Node::Leaf("NotBefore", format_time(self.not_before).into()));
        children.push(Node::leaf("Revoked", "0"));
        children.extend(rate_limit(self.limits.as_ref(), deepest, &inner));
        Node::Parent {
            name: "Connection",
            children,
            inner,
            outer,
        }
    }
}

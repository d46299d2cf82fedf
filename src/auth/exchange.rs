//! Issuing tokens for API connections: the console's first refresh token, and the exchange of a
//! refresh token for an access token and the next refresh token (MDR's `session/confirm`).
//!
//! Refresh tokens are single use (RFC 9700 §4.14.2): the session store marks each one used,
//! atomically, and keeps the mark until the token expires. A token presented a second time kills
//! its whole family, in this process at once and in the store for every restart after, because
//! one of the two presenters is not the legitimate client and the gateway cannot tell which.

use std::sync::Arc;
use std::time::Duration;

use super::connections::{ConnectionRecord, Connections};
use super::jwt::{self, Claims, JwtKeys, Kind};
use super::sessions::{Consumed, SessionStore, StoreError};
use crate::config::SessionSettings;

/// What an exchange hands the client.
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    /// The access token, sent as the credential on every call.
    pub access_token: String,
    /// The next refresh token; the one presented is used up.
    pub refresh_token: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Issued(<redacted>)")
    }
}

/// Why an exchange failed. The client sees one `invalid_grant` for every grant failure, never
/// which (RFC 6749 §5.2); logs and metrics see the reason.
#[derive(Debug)]
pub enum ExchangeError {
    /// The refresh token is not one the gateway will exchange.
    InvalidGrant(GrantFailure),
    /// The session store could not be reached: the exchange may be retried.
    Unavailable(StoreError),
}

/// The reason behind an `invalid_grant`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantFailure {
    /// Not a refresh token signed by this gateway's key (or not a JWT at all).
    Malformed,
    /// Past its `exp`.
    Expired,
    /// Issued to another client ID than the URL names, or to a connection that no longer exists.
    WrongClient,
    /// The connection is disabled, or its family was revoked or killed earlier.
    Revoked,
    /// Presented a second time: its family is dead now.
    Reused,
}

impl GrantFailure {
    /// The label for logs and `scangate_session_exchanges_total{result}`.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantFailure::Malformed => "malformed",
            GrantFailure::Expired => "expired",
            GrantFailure::WrongClient => "wrong_client",
            GrantFailure::Revoked => "revoked",
            GrantFailure::Reused => "reused",
        }
    }
}

/// A refresh token that begins a new family, as `connection add` and `connection refresh` print.
/// The family begins at `now`, which the caller writes as the connection's `NotBefore` so every
/// older family dies with it.
pub fn console_refresh_token(
    keys: &JwtKeys,
    client_id: &str,
    lifetime: Duration,
    now: u64,
) -> (String, Claims) {
    let jti = jwt::new_id();
    let claims = Claims {
        sub: client_id.to_owned(),
        iat: now,
        exp: now + lifetime.as_secs(),
        fam: jti.clone(),
        jti,
        fit: now,
    };
    (jwt::mint(keys, Kind::Refresh, &claims), claims)
}

/// Exchanges `refresh_token` presented for `client_id` at `now`.
pub async fn exchange(
    keys: &JwtKeys,
    connections: &Connections,
    store: &dyn SessionStore,
    lifetimes: &SessionSettings,
    client_id: &str,
    refresh_token: &str,
    now: u64,
) -> Result<(Issued, Arc<ConnectionRecord>), ExchangeError> {
    use ExchangeError::InvalidGrant;
    let claims = jwt::verify(keys, Kind::Refresh, refresh_token, now).map_err(|e| match e {
        jwt::JwtError::Expired => InvalidGrant(GrantFailure::Expired),
        _ => InvalidGrant(GrantFailure::Malformed),
    })?;
    if claims.sub != client_id {
        return Err(InvalidGrant(GrantFailure::WrongClient));
    }
    let record = connections
        .get(client_id)
        .ok_or(InvalidGrant(GrantFailure::WrongClient))?;
    if !record.enabled || claims.fit < record.not_before || connections.is_dead(&claims.fam) {
        return Err(InvalidGrant(GrantFailure::Revoked));
    }
    // If this is a reuse, every token of the family expires by `dead_until`: the newest refresh
    // token was issued no later than now.
    let longest = lifetimes
        .refresh_lifetime
        .max(lifetimes.console_refresh_lifetime)
        .max(lifetimes.access_lifetime);
    let dead_until = now + longest.as_secs();
    // The store records the kill itself, in the same step as it finds the reuse.
    match store
        .consume_or_kill(client_id, &claims.fam, &claims.jti, claims.exp, dead_until)
        .await
        .map_err(ExchangeError::Unavailable)?
    {
        Consumed::Fresh => {}
        Consumed::Reused => {
            // Dead here at once, whatever the store says.
            connections.kill_family(&claims.fam, dead_until);
            tracing::warn!(
                connection = &*record.name,
                "refresh token reused: its whole token family is revoked"
            );
            return Err(InvalidGrant(GrantFailure::Reused));
        }
    }
    let mint = |kind: Kind, lifetime: Duration| {
        let next = Claims {
            sub: claims.sub.clone(),
            iat: now,
            exp: now + lifetime.as_secs(),
            jti: jwt::new_id(),
            fam: claims.fam.clone(),
            fit: claims.fit,
        };
        jwt::mint(keys, kind, &next)
    };
    let issued = Issued {
        access_token: mint(Kind::Access, lifetimes.access_lifetime),
        refresh_token: mint(Kind::Refresh, lifetimes.refresh_lifetime),
    };
    if let Err(e) = store.record_exchange(client_id, now).await {
        tracing::warn!(connection = &*record.name, error = %e, "cannot record the exchange time");
    }
    Ok((issued, record))
}

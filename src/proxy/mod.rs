//! The gateway proper: listener and connections ([`server`]), the request path ([`handler`]),
//! bodies ([`body`]), the access log and request metrics ([`access`]), header rules
//! ([`headers`]), upstreams ([`upstream`]) and the one mapping from failures to statuses
//! ([`error`]).

pub mod access;
pub mod body;
pub mod error;
pub mod exchange;
pub mod framing;
pub mod handler;
pub mod headers;
pub mod server;
pub mod tls;
pub mod upstream;

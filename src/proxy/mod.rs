//! The gateway proper: listener and connections ([`server`]), the request path ([`handler`]) with
//! its `scanfile` path check ([`scanfile`]), bodies ([`body`]), the access log and request metrics
//! ([`access`]), header rules ([`headers`]), upstreams ([`upstream`]) and the one mapping from
//! failures to statuses ([`error`]).

pub mod access;
pub mod body;
pub mod error;
pub mod framing;
pub mod handler;
pub mod headers;
pub mod scanfile;
pub mod server;
pub mod tls;
pub mod upstream;

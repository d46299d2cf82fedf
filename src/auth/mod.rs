//! Authentication: token digests and the key file ([`token`]), the live token map ([`store`]),
//! reading the token from a request ([`header`]), what a role may call ([`policy`]), where a
//! `scanfile` object may lie ([`scan_path`]), the per-connection digest memo ([`memo`]), the
//! [`principal`] every credential resolves to, and API connections ([`jwt`], [`connections`],
//! [`exchange`], [`sessions`]); a principal's live limit state ([`limits`]) and quota counts
//! ([`quota`]). [`token_ops`] and `connections::ops` are the credential edits the
//! CLI and the web console share.

pub mod connections;
pub mod exchange;
pub mod header;
pub mod jwt;
pub mod limits;
pub mod memo;
pub mod policy;
pub mod principal;
pub mod quota;
pub mod scan_path;
pub mod sessions;
pub mod store;
pub mod token;
pub mod token_ops;

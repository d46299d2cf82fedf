//! Authentication: token digests and the key file ([`token`]), the live token map ([`store`]),
//! reading the token from a request ([`header`]), what a role may call ([`policy`]), where a
//! `scanfile` object may lie ([`scan_path`]) and the per-connection digest memo ([`memo`]).

pub mod header;
pub mod memo;
pub mod policy;
pub mod scan_path;
pub mod store;
pub mod token;

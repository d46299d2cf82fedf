//! Authentication: token digests and the key file ([`token`]), the live token map ([`store`]),
//! reading the token from a request ([`header`]), what a role may call ([`policy`]) and the
//! per-connection digest memo ([`memo`]).

pub mod header;
pub mod jwt;
pub mod memo;
pub mod policy;
pub mod sessions;
pub mod store;
pub mod token;

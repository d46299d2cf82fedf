//! Authentication: token digests and the key file ([`token`]), the live token map ([`store`]),
//! reading the token from a request ([`header`]) and what a role may call ([`policy`]).

pub mod header;
pub mod policy;
pub mod store;
pub mod token;

//! `GatewaySettings/MaxConnectionsPerClient`: how many client connections one address may hold.
//!
//! MaxHTTPSessionsNum bounds the connections of everybody together; without a cap per address one
//! host could take every slot before any deadline frees one. An IPv4 client counts by its address;
//! an IPv6 client by its /64, the smallest block a site is given, since a host can pick any
//! address inside it. An IPv4-mapped IPv6 peer (a dual-stack socket) counts as the IPv4 address.
//! Unix-socket clients have no address and no cap.
//!
//! The counts live in one map shared by every worker thread. It is touched twice per connection
//! (admit and close), never per request.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use dashmap::DashMap;

/// The per-address connection counts, shared by every worker serving one listener.
#[derive(Debug)]
pub struct ClientCap {
    /// Connections one address may hold; `None` = no cap.
    max: Option<usize>,
    /// Open connections per address, for addresses that have any.
    open: DashMap<IpAddr, usize>,
}

/// The address already holds MaxConnectionsPerClient connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverCap;

/// One admitted connection's place in its address's count; dropping it gives the place back.
#[derive(Debug)]
pub struct ClientSlot {
    cap: Arc<ClientCap>,
    key: IpAddr,
}

impl ClientCap {
    /// A cap of `max` connections per address (`None` or 0 = no cap).
    pub fn new(max: Option<usize>) -> Arc<ClientCap> {
        Arc::new(ClientCap {
            max: max.filter(|&n| n > 0),
            open: DashMap::new(),
        })
    }

    /// Admits a connection from `peer`: `Ok(None)` when nothing is counted (no cap, or a unix
    /// socket).
    pub fn admit(
        self: &Arc<Self>,
        peer: Option<SocketAddr>,
    ) -> Result<Option<ClientSlot>, OverCap> {
        let (Some(max), Some(peer)) = (self.max, peer) else {
            return Ok(None);
        };
        let key = key(peer.ip());
        let mut count = self.open.entry(key).or_insert(0);
        if *count >= max {
            return Err(OverCap);
        }
        *count += 1;
        Ok(Some(ClientSlot {
            cap: Arc::clone(self),
            key,
        }))
    }

    /// Connections `ip` holds now.
    pub fn open(&self, ip: IpAddr) -> usize {
        self.open.get(&key(ip)).map_or(0, |n| *n)
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        // The last connection of an address removes its entry, so the map holds only addresses
        // with open connections.
        self.cap.open.remove_if_mut(&self.key, |_, n| {
            *n -= 1;
            *n == 0
        });
    }
}

/// What an address counts as: IPv4 as is, IPv6 by its /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !(u128::from(u64::MAX));
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(text: &str) -> Option<SocketAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn the_connection_past_the_cap_is_refused_until_one_closes() {
        let cap = ClientCap::new(Some(2));
        let a = cap.admit(peer("10.0.0.1:1000")).unwrap();
        let _b = cap.admit(peer("10.0.0.1:1001")).unwrap();
        assert!(cap.admit(peer("10.0.0.1:1002")).is_err());
        // Another address has its own count.
        assert!(cap.admit(peer("10.0.0.2:1000")).unwrap().is_some());
        drop(a);
        assert!(cap.admit(peer("10.0.0.1:1003")).unwrap().is_some());
    }

    #[test]
    fn entries_go_away_with_the_last_connection() {
        let cap = ClientCap::new(Some(5));
        let slots: Vec<_> = (0..3)
            .map(|i| cap.admit(peer(&format!("10.0.0.1:{i}"))).unwrap())
            .collect();
        assert_eq!(cap.open("10.0.0.1".parse().unwrap()), 3);
        drop(slots);
        assert_eq!(cap.open("10.0.0.1".parse().unwrap()), 0);
        assert!(cap.open.is_empty());
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let cap = ClientCap::new(Some(1));
        let _a = cap.admit(peer("[2001:db8:1:2::1]:1")).unwrap();
        assert!(cap.admit(peer("[2001:db8:1:2:ffff::9]:1")).is_err());
        assert!(cap.admit(peer("[2001:db8:1:3::1]:1")).unwrap().is_some());
        let _v4 = cap.admit(peer("192.0.2.7:1")).unwrap();
        assert!(cap.admit(peer("[::ffff:192.0.2.7]:1")).is_err());
    }

    #[test]
    fn no_cap_and_unix_sockets_count_nothing() {
        let off = ClientCap::new(None);
        assert!((0..10).all(|_| off.admit(peer("10.0.0.1:1")).unwrap().is_none()));
        let cap = ClientCap::new(Some(1));
        assert!(cap.admit(None).unwrap().is_none());
        assert!(cap.open.is_empty());
    }
}

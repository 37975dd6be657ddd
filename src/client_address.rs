//! The address a request comes from, as rate limits count it.
//!
//! Without proxies it is the TCP peer. When the peer is a trusted proxy
//! (`REGISTRAR_TRUSTED_PROXIES`), `X-Forwarded-For` is read from the right: each proxy
//! appends the address it received the request from, so the right-most address that is not
//! a trusted proxy is the one the client cannot choose. Everything left of it was written by
//! the client (or by proxies nobody vouches for) and is ignored.

use std::net::{IpAddr, SocketAddr};

use actix_web::HttpRequest;
use ipnet::IpNet;

/// The proxies whose `X-Forwarded-For` is believed (`REGISTRAR_TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Comma-separated addresses or CIDRs; empty: none.
    pub fn parse(text: &str) -> Result<Self, String> {
        text.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(parse_proxy)
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    /// The client's address, or `None` when the connection has no peer address.
    pub fn client_of(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip();
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','));
        Some(self.resolve(peer, forwarded))
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// `forwarded` in header order (left to right).
    fn resolve<'a>(&self, peer: IpAddr, forwarded: impl Iterator<Item = &'a str>) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        let entries: Vec<&str> = forwarded.collect();
        for entry in entries.into_iter().rev() {
            match parse_entry(entry) {
                Some(ip) if self.trusts(ip) => client = ip,
                Some(ip) => return ip,
                // A trusted hop passed on something that is not an address: count the
                // request against that hop rather than against text a client may choose.
                None => return client,
            }
        }
        // Every hop is trusted: the request started inside the trusted network.
        client
    }
}

/// An `X-Forwarded-For` entry: an address, possibly with a port or in brackets.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<IpAddr>()
                .ok()
        })
        .map(|ip| ip.to_canonical())
}

/// A `REGISTRAR_TRUSTED_PROXIES` entry: a CIDR (`10.0.0.0/8`) or a single address.
fn parse_proxy(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{text}` is neither an IP address nor a CIDR such as 10.0.0.0/8"))
}

/// `REGISTRAR_TRUST_FORWARDED_FOR` believed the left-most address, which the client writes;
/// it cannot be mapped safely onto the proxy list, so setting it stops the start.
pub fn replaced_trust_forwarded_for(_: &str) -> Result<bool, String> {
    Err(
        "REGISTRAR_TRUST_FORWARDED_FOR is no longer read: set REGISTRAR_TRUSTED_PROXIES to \
         the addresses or CIDRs of your proxies (default: loopback), or to an empty value to \
         ignore X-Forwarded-For, and unset REGISTRAR_TRUST_FORWARDED_FOR"
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn behind(proxies: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&proxies.join(",")).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn resolve(addresses: &TrustedProxies, peer: &str, header: &str) -> IpAddr {
        addresses.resolve(ip(peer), header.split(','))
    }

    #[test]
    fn the_header_is_ignored_unless_the_peer_is_a_trusted_proxy() {
        let addresses = behind(&["10.0.0.0/8"]);
        assert_eq!(
            resolve(&addresses, "203.0.113.9", "198.51.100.1"),
            ip("203.0.113.9")
        );
        assert_eq!(
            resolve(&behind(&[]), "127.0.0.1", "198.51.100.1"),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn the_right_most_untrusted_address_is_the_client() {
        let addresses = behind(&["10.0.0.0/8", "192.0.2.7"]);
        // The client forged the first two entries; the proxies appended the rest.
        let header = "1.1.1.1, 2.2.2.2, 203.0.113.9, 192.0.2.7";
        assert_eq!(resolve(&addresses, "10.1.2.3", header), ip("203.0.113.9"));
        assert_eq!(
            resolve(&addresses, "10.1.2.3", "203.0.113.9:5123"),
            ip("203.0.113.9")
        );
        assert_eq!(
            resolve(&addresses, "10.1.2.3", "[2001:db8::1]"),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn when_every_hop_is_trusted_the_left_most_is_taken() {
        let addresses = behind(&["10.0.0.0/8"]);
        assert_eq!(
            resolve(&addresses, "10.0.0.1", "10.0.0.3, 10.0.0.2"),
            ip("10.0.0.3")
        );
        assert_eq!(resolve(&addresses, "10.0.0.1", ""), ip("10.0.0.1"));
    }

    #[test]
    fn garbage_passed_on_by_a_trusted_hop_counts_against_that_hop() {
        let addresses = behind(&["10.0.0.0/8"]);
        assert_eq!(
            resolve(&addresses, "10.0.0.1", "203.0.113.9, unknown, 10.0.0.2"),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_proxies() {
        let addresses = behind(&["127.0.0.0/8"]);
        assert_eq!(
            resolve(&addresses, "::ffff:127.0.0.1", "203.0.113.9"),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn proxy_lists_hold_cidrs_or_addresses_and_may_be_empty() {
        let net = |text: &str| text.parse::<IpNet>().unwrap();
        assert_eq!(
            TrustedProxies::parse(" ::1 , 10.0.0.0/8").unwrap(),
            TrustedProxies(vec![net("::1/128"), net("10.0.0.0/8")])
        );
        assert_eq!(TrustedProxies::parse("").unwrap(), TrustedProxies(vec![]));
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("127.0.0.1, proxy.local").is_err());
    }
}

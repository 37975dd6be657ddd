//! The address guard: webhooks go to the public internet only. An organiser chooses the URL,
//! so without this a webhook would be a way to make the service call its own network: the
//! database, the cloud's metadata service (169.254.169.254, fd00:ec2::254), an admin port on
//! loopback.
//!
//! Checked twice: when an endpoint is created or changed (a 422 naming `url`), and on every
//! delivery, after DNS resolution, by the HTTP client's resolver, so that a name that
//! resolved to a public address yesterday and to 10.0.0.5 today (DNS rebinding) is refused
//! too; the client connects only to the addresses the guard let through. An IP literal in
//! the URL does not go through the resolver and is checked before sending. Unless
//! `REGISTRAR_WEBHOOK_ALLOW_PRIVATE=true` (tests, local development).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Host;

use crate::config::{Config, Environment};

pub const MAX_URL_LENGTH: usize = 2000;

/// How long a name may take to resolve when an endpoint is checked.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the guard lets through.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Non-public addresses too.
    pub allow_private: bool,
    /// `http://` URLs too (development, or with private addresses allowed).
    pub allow_http: bool,
}

impl Policy {
    pub fn from_config(config: &Config) -> Self {
        Policy {
            allow_private: config.webhook_allow_private,
            allow_http: config.webhook_allow_private
                || config.environment == Environment::Development,
        }
    }
}

/// A request the guard stopped.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(
        "refused: the host resolves to no public address (loopback, private, link-local and other non-public addresses are not called)"
    )]
    Resolved,
    #[error(
        "refused: the URL's address is not public (loopback, private, link-local and other non-public addresses are not called)"
    )]
    Literal,
}

/// Whether `ip` is an address of the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => is_public_v6(ip),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let special = a == 0                            // "this network", 0.0.0.0
        || ip.is_loopback()                         // 127.0.0.0/8
        || ip.is_private()                          // 10/8, 172.16/12, 192.168/16
        || ip.is_link_local()                       // 169.254/16, the metadata service
        || (a == 100 && (64..128).contains(&b))     // 100.64/10, carrier-grade NAT
        || (a == 192 && b == 0 && c == 0)           // 192.0.0/24, protocol assignments
        || (a == 198 && (b == 18 || b == 19))       // 198.18/15, benchmarking
        || ip.is_multicast()                        // 224/4
        || a >= 240; // 240/4 reserved, and the broadcast address
    !special
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    // Addresses that carry an IPv4 address are judged by it.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    let embedded = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return is_public_v4(embedded); // 64:ff9b::/96, NAT64
    }
    if s[0] == 0x2002 {
        // 6to4: the IPv4 address follows the prefix.
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return is_public_v4(v4);
    }
    let special = s[0..6] == [0; 6]                 // ::, ::1 and IPv4-compatible ::a.b.c.d
        || (s[0] & 0xfe00) == 0xfc00                // fc00::/7 unique local, fd00:ec2::254
        || (s[0] & 0xffc0) == 0xfe80                // fe80::/10 link-local
        || (s[0] & 0xffc0) == 0xfec0                // fec0::/10 site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00                // ff00::/8 multicast
        || (s[0] == 0x100 && s[1..4] == [0; 3]); // 100::/64 discard
    !special
}

/// Checks an endpoint URL when it is created or changed: its length, scheme and form, and
/// that its host is (or resolves only to) public addresses. The message says what is wrong.
pub async fn check_url(text: &str, policy: Policy) -> Result<Url, String> {
    if text.chars().count() > MAX_URL_LENGTH {
        return Err(format!("must be at most {MAX_URL_LENGTH} characters"));
    }
    let url = Url::parse(text.trim()).map_err(|_| "must be an absolute URL".to_owned())?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        "http" => return Err("must be an https:// URL".to_owned()),
        _ => {
            return Err(if policy.allow_http {
                "must be an https:// or http:// URL".to_owned()
            } else {
                "must be an https:// URL".to_owned()
            });
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain a user name or password".to_owned());
    }
    if url.as_str().len() > MAX_URL_LENGTH {
        return Err(format!(
            "must be at most {MAX_URL_LENGTH} characters once encoded"
        ));
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let refused = "must not point at a loopback, private, link-local or other non-public address";
    match url.host() {
        None => return Err("must name a host".to_owned()),
        Some(_) if policy.allow_private => {}
        Some(Host::Ipv4(ip)) if !is_public_v4(ip) => return Err(refused.to_owned()),
        Some(Host::Ipv6(ip)) if !is_public_v6(ip) => return Err(refused.to_owned()),
        Some(Host::Ipv4(_) | Host::Ipv6(_)) => {}
        Some(Host::Domain(name)) => {
            let resolved = tokio::time::timeout(
                RESOLVE_TIMEOUT,
                tokio::net::lookup_host((name.trim_end_matches('.'), port)),
            )
            .await;
            let addrs: Vec<SocketAddr> = match resolved {
                Ok(Ok(addrs)) => addrs.collect(),
                _ => return Err("the host name does not resolve".to_owned()),
            };
            if addrs.is_empty() {
                return Err("the host name does not resolve".to_owned());
            }
            if addrs.iter().any(|addr| !is_public(addr.ip())) {
                return Err(refused.to_owned());
            }
        }
    }
    Ok(url)
}

/// Before a delivery: an IP literal in the URL (the resolver never sees those).
pub fn check_literal(url: &Url, policy: Policy) -> Result<(), Refused> {
    let public = match url.host() {
        _ if policy.allow_private => true,
        Some(Host::Ipv4(ip)) => is_public_v4(ip),
        Some(Host::Ipv6(ip)) => is_public_v6(ip),
        Some(Host::Domain(_)) => true,
        None => false,
    };
    if public {
        Ok(())
    } else {
        Err(Refused::Literal)
    }
}

/// The HTTP client's resolver: the system's answers, less the addresses the guard refuses.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub policy: Policy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.policy.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| allow_private || is_public(addr.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(Refused::Resolved) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: Policy = Policy {
        allow_private: false,
        allow_http: false,
    };

    #[test]
    fn non_public_addresses_are_recognised() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "192.0.0.8",
            "198.18.0.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "100::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "169.253.1.1",
            "2a00:1450:4010:c05::8a",
            "::ffff:93.184.216.34",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn urls_must_be_https_public_and_short() {
        let long = format!("https://93.184.216.34/{}", "a".repeat(2000));
        for (url, reason) in [
            ("not a url", "absolute URL"),
            ("http://93.184.216.34/hook", "https://"),
            ("ftp://93.184.216.34/hook", "https://"),
            ("https://user:pw@93.184.216.34/hook", "user name"),
            ("https://127.0.0.1/hook", "non-public"),
            ("https://2130706433/hook", "non-public"),
            ("https://0x7f.1/hook", "non-public"),
            ("https://[::1]/hook", "non-public"),
            ("https://[::ffff:169.254.169.254]/hook", "non-public"),
            ("https://169.254.169.254/latest/meta-data", "non-public"),
            ("https://[fd00:ec2::254]/hook", "non-public"),
            ("https://localhost/hook", "non-public"),
            (long.as_str(), "at most 2000"),
        ] {
            let error = check_url(url, STRICT).await.unwrap_err();
            assert!(error.contains(reason), "{url}: {error}");
        }
        assert!(
            check_url("https://93.184.216.34/hook", STRICT)
                .await
                .is_ok()
        );
        let development = Policy {
            allow_private: false,
            allow_http: true,
        };
        assert!(
            check_url("http://93.184.216.34/hook", development)
                .await
                .is_ok()
        );
        let open = Policy {
            allow_private: true,
            allow_http: true,
        };
        assert!(check_url("http://127.0.0.1:9/hook", open).await.is_ok());
    }

    #[test]
    fn literals_are_checked_before_sending() {
        let url = Url::parse("http://127.0.0.1:8080/").unwrap();
        assert!(check_literal(&url, STRICT).is_err());
        let url = Url::parse("http://[fe80::1]/").unwrap();
        assert!(check_literal(&url, STRICT).is_err());
        let url = Url::parse("https://hooks.example.org/").unwrap();
        assert!(check_literal(&url, STRICT).is_ok());
    }
}

//! Which addresses a delivery may reach. Endpoint URLs are checked when they are
//! saved, and the dispatcher checks again the addresses it is about to connect to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Whether `ip` is an ordinary public unicast address: not loopback, private,
/// link-local (cloud metadata included), CGNAT, multicast, unique-local,
/// unspecified, broadcast or reserved, in any of its IPv6 spellings.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0 // "this network", 0.0.0.0 included
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64.0.0/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || ip.is_multicast()
        || a >= 240) // reserved, and 255.255.255.255
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = ip.segments();
    // NAT64 (64:ff9b::/96) and the deprecated IPv4-compatible form (::a.b.c.d) reach IPv4.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || segments[..6] == [0; 6] {
        let [_, _, _, _, _, _, high, low] = segments;
        let embedded = Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
        return !ip.is_unspecified() && !ip.is_loopback() && is_public_v4(embedded);
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00 // unique-local fc00::/7
        || (segments[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (segments[0] & 0xffc0) == 0xfec0 // site-local fec0::/10
        || segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
}

/// Why a host's addresses may not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("blocked address {0}: not a public address")]
    Blocked(IpAddr),
    #[error("DNS failure: {0}")]
    Dns(String),
}

/// Checks every address of an answer: one that is not public refuses the whole
/// answer, since a connection may be tried to any of them.
pub fn check_answer(addresses: &[IpAddr], allow_private_targets: bool) -> Result<(), AddressError> {
    if allow_private_targets {
        return Ok(());
    }
    match addresses.iter().find(|ip| !is_public(**ip)) {
        Some(refused) => Err(AddressError::Blocked(*refused)),
        None => Ok(()),
    }
}

/// Resolves `host` with the system resolver and checks the answer; the addresses
/// returned are the only ones a caller may connect to.
pub async fn resolve_checked(
    host: &str,
    port: u16,
    allow_private_targets: bool,
) -> Result<Vec<SocketAddr>, AddressError> {
    let answer: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| AddressError::Dns(format!("{host}: {e}")))?
        .collect();
    if answer.is_empty() {
        return Err(AddressError::Dns(format!("{host}: no addresses")));
    }
    let ips: Vec<IpAddr> = answer.iter().map(SocketAddr::ip).collect();
    check_answer(&ips, allow_private_targets)?;
    Ok(answer)
}

/// The creation-time check of an endpoint's host name: the first address it resolves
/// to that is not public, if any. A name that does not resolve is accepted, as
/// CONTRACT says (its deliveries fail and retry); the dispatcher checks again at
/// every connection, so this only turns an obvious mistake into a 400 early.
pub async fn private_address_of(host: &str, allow_private_targets: bool) -> Option<IpAddr> {
    match resolve_checked(host, 0, allow_private_targets).await {
        Err(AddressError::Blocked(ip)) => Some(ip),
        Ok(_) | Err(AddressError::Dns(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_every_non_public_range() {
        for text in [
            "0.0.0.0",
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.0.8",
            "198.18.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
            "2001:db8::1",
            "fec0::1",
        ] {
            assert!(
                !is_public(text.parse().unwrap()),
                "{text} should be refused"
            );
        }
    }

    #[test]
    fn one_private_address_refuses_the_whole_answer() {
        let public: IpAddr = "8.8.8.8".parse().unwrap();
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(check_answer(&[public], false), Ok(()));
        assert_eq!(
            check_answer(&[public, loopback], false),
            Err(AddressError::Blocked(loopback))
        );
        assert_eq!(check_answer(&[public, loopback], true), Ok(()));
    }

    #[tokio::test]
    async fn resolving_checks_what_the_name_resolves_to() {
        assert!(matches!(
            resolve_checked("localhost", 80, false).await,
            Err(AddressError::Blocked(_))
        ));
        assert!(private_address_of("localhost", false).await.is_some());
        assert_eq!(private_address_of("localhost", true).await, None);
        assert_eq!(
            private_address_of("no-such-host.invalid", false).await,
            None
        );
        let allowed = resolve_checked("localhost", 80, true).await.unwrap();
        assert!(
            allowed
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 80)
        );
    }

    #[test]
    fn allows_public_addresses() {
        for text in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.0.2.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(text.parse().unwrap()), "{text} should be allowed");
        }
    }
}

//! Which addresses a delivery may reach. Endpoint URLs are checked when they are
//! saved, and the dispatcher checks again the addresses it is about to connect to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Whether `ip` is an ordinary public unicast address: in no range of IANA's
/// special-purpose registries that is not globally reachable (loopback,
/// private, link-local with cloud metadata, CGNAT, documentation,
/// benchmarking, multicast, reserved, broadcast, unique-local …), and, for an
/// IPv6 address that carries an IPv4 one, judged by the IPv4 address it leads to.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

/// A block of addresses: a network and its prefix length.
struct Block<T> {
    network: T,
    prefix: u32,
}

impl Block<Ipv4Addr> {
    fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX.checked_shl(32 - self.prefix).unwrap_or(0);
        u32::from(ip) & mask == u32::from(self.network) & mask
    }
}

impl Block<Ipv6Addr> {
    fn contains(&self, ip: Ipv6Addr) -> bool {
        let mask = u128::MAX.checked_shl(128 - self.prefix).unwrap_or(0);
        u128::from(ip) & mask == u128::from(self.network) & mask
    }
}

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u32) -> Block<Ipv4Addr> {
    Block {
        network: Ipv4Addr::new(a, b, c, d),
        prefix,
    }
}

const fn v6(segments: [u16; 8], prefix: u32) -> Block<Ipv6Addr> {
    let [a, b, c, d, e, f, g, h] = segments;
    Block {
        network: Ipv6Addr::new(a, b, c, d, e, f, g, h),
        prefix,
    }
}

/// The IPv4 ranges no delivery may reach (IANA IPv4 special-purpose registry,
/// plus multicast and the reserved 240/4).
const NON_PUBLIC_V4: &[Block<Ipv4Addr>] = &[
    v4(0, 0, 0, 0, 8),       // "this network", 0.0.0.0 included
    v4(10, 0, 0, 0, 8),      // private
    v4(100, 64, 0, 0, 10),   // shared address space (CGNAT)
    v4(127, 0, 0, 0, 8),     // loopback
    v4(169, 254, 0, 0, 16),  // link-local, cloud metadata included
    v4(172, 16, 0, 0, 12),   // private
    v4(192, 0, 0, 0, 24),    // IETF protocol assignments
    v4(192, 0, 2, 0, 24),    // documentation (TEST-NET-1)
    v4(192, 88, 99, 0, 24),  // 6to4 relay anycast (deprecated)
    v4(192, 168, 0, 0, 16),  // private
    v4(198, 18, 0, 0, 15),   // benchmarking
    v4(198, 51, 100, 0, 24), // documentation (TEST-NET-2)
    v4(203, 0, 113, 0, 24),  // documentation (TEST-NET-3)
    v4(224, 0, 0, 0, 4),     // multicast
    v4(240, 0, 0, 0, 4),     // reserved, and 255.255.255.255
];

/// Global unicast: every other IPv6 address is unallocated or special
/// (unspecified, loopback, discard `100::/64`, local-use NAT64
/// `64:ff9b:1::/48`, SRv6 `5f00::/16`, unique-local, site-local, link-local,
/// multicast), so none of them is public.
const GLOBAL_UNICAST_V6: Block<Ipv6Addr> = v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);

/// The ranges inside global unicast that are not public (IANA IPv6
/// special-purpose registry).
const NON_PUBLIC_V6: &[Block<Ipv6Addr>] = &[
    // IETF protocol assignments: Teredo 2001::/32, benchmarking 2001:2::/48,
    // ORCHID 2001:10::/28 and ORCHIDv2 2001:20::/28 among them. Teredo is
    // refused outright rather than judged by the IPv4 it carries: it reaches a
    // client behind a NAT through a relay (never a webhook receiver), and the
    // relay takes the destination port from the address, not from the URL.
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
    v6([0x2001, 0x0db8, 0, 0, 0, 0, 0, 0], 32), // documentation
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),      // documentation
];

/// The IPv6 forms that lead to an IPv4 address, and where that address sits
/// (its bit offset from the left).
const EMBEDDING_V4: &[(Block<Ipv6Addr>, u32)] = &[
    (v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96), 96), // IPv4-mapped
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 96), 96),      // IPv4-compatible (deprecated)
    (v6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96), 96), // IPv4-translated (SIIT)
    (v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96), 96), // NAT64, well-known prefix
    (v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16), 16), // 6to4: a relay forwards to it
];

fn is_public_v4(ip: Ipv4Addr) -> bool {
    !NON_PUBLIC_V4.iter().any(|block| block.contains(ip))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(embedded) = embedded_v4(ip) {
        return is_public_v4(embedded);
    }
    GLOBAL_UNICAST_V6.contains(ip) && !NON_PUBLIC_V6.iter().any(|block| block.contains(ip))
}

/// The IPv4 address an IPv6 address leads to, when it is one of the forms that
/// carry one. `::` and `::1` read as 0.0.0.0 and 0.0.0.1, both refused.
/// The cast keeps the 32 bits that start at the form's offset.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    EMBEDDING_V4
        .iter()
        .find(|(block, _)| block.contains(ip))
        .map(|(_, offset)| Ipv4Addr::from((u128::from(ip) >> (96 - offset)) as u32))
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

    use Verdict::{Public, Refused};

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Verdict {
        Public,
        Refused,
    }

    /// One row per range (its edges, and the neighbours just outside) and per
    /// embedded form, with a public example of each form as well.
    const ADDRESSES: &[(&str, &str, Verdict)] = &[
        ("public", "1.1.1.1", Public),
        ("public", "8.8.8.8", Public),
        ("public", "223.255.255.255", Public),
        ("this network", "0.0.0.0", Refused),
        ("this network", "0.255.255.255", Refused),
        ("public, after this network", "1.0.0.0", Public),
        ("private 10/8", "10.0.0.1", Refused),
        ("private 10/8", "10.255.255.255", Refused),
        ("public, before 10/8", "9.255.255.255", Public),
        ("public, after 10/8", "11.0.0.0", Public),
        ("CGNAT", "100.64.0.1", Refused),
        ("CGNAT", "100.127.255.254", Refused),
        ("public, before CGNAT", "100.63.255.255", Public),
        ("public, after CGNAT", "100.128.0.1", Public),
        ("loopback", "127.0.0.1", Refused),
        ("loopback", "127.255.255.254", Refused),
        ("link-local", "169.254.0.1", Refused),
        ("link-local: cloud metadata", "169.254.169.254", Refused),
        ("public, after link-local", "169.255.0.1", Public),
        ("private 172.16/12", "172.16.0.1", Refused),
        ("private 172.16/12", "172.31.255.255", Refused),
        ("public, before 172.16/12", "172.15.255.255", Public),
        ("public, after 172.16/12", "172.32.0.1", Public),
        ("IETF protocol assignments", "192.0.0.8", Refused),
        ("IETF protocol assignments", "192.0.0.255", Refused),
        ("public, before 192.0.0/24", "191.255.255.255", Public),
        ("documentation TEST-NET-1", "192.0.2.1", Refused),
        (
            "public, between 192.0.0/24 and TEST-NET-1",
            "192.0.1.1",
            Public,
        ),
        ("public, after TEST-NET-1", "192.0.3.1", Public),
        ("6to4 relay anycast", "192.88.99.1", Refused),
        ("public, beside 6to4 relay anycast", "192.88.98.1", Public),
        ("private 192.168/16", "192.168.1.1", Refused),
        ("private 192.168/16", "192.168.255.255", Refused),
        ("public, after 192.168/16", "192.169.0.1", Public),
        ("benchmarking", "198.18.0.1", Refused),
        ("benchmarking", "198.19.255.255", Refused),
        ("public, before benchmarking", "198.17.255.255", Public),
        ("public, after benchmarking", "198.20.0.1", Public),
        ("documentation TEST-NET-2", "198.51.100.7", Refused),
        ("public, after TEST-NET-2", "198.51.101.1", Public),
        ("documentation TEST-NET-3", "203.0.113.9", Refused),
        ("public, before TEST-NET-3", "203.0.112.1", Public),
        ("multicast", "224.0.0.1", Refused),
        ("multicast", "239.255.255.250", Refused),
        ("reserved 240/4", "240.0.0.1", Refused),
        ("broadcast", "255.255.255.255", Refused),
        ("public IPv6", "2606:4700::1111", Public),
        ("public IPv6", "2a00:1450:4001::200e", Public),
        ("unspecified", "::", Refused),
        ("loopback", "::1", Refused),
        ("discard", "100::1", Refused),
        ("unallocated, outside 2000::/3", "4000::1", Refused),
        ("SRv6 SIDs", "5f00::1", Refused),
        ("unique-local", "fc00::1", Refused),
        ("unique-local", "fd12:3456::1", Refused),
        ("site-local", "fec0::1", Refused),
        ("link-local", "fe80::1", Refused),
        ("link-local", "febf::1", Refused),
        ("multicast", "ff02::1", Refused),
        ("documentation", "2001:db8::1", Refused),
        ("documentation 3fff::/20", "3fff::1", Refused),
        ("documentation 3fff::/20", "3fff:fff:ffff::1", Refused),
        ("public, after 3fff::/20", "3fff:1000::1", Public),
        ("benchmarking", "2001:2::1", Refused),
        ("ORCHID", "2001:10::1", Refused),
        ("ORCHIDv2", "2001:20::1", Refused),
        ("IETF protocol assignments", "2001:1ff::1", Refused),
        ("public, after 2001::/23", "2001:200::1", Public),
        ("IPv4-mapped, loopback", "::ffff:127.0.0.1", Refused),
        ("IPv4-mapped, private", "::ffff:10.0.0.1", Refused),
        ("IPv4-mapped, metadata", "::ffff:169.254.169.254", Refused),
        ("IPv4-mapped, documentation", "::ffff:192.0.2.1", Refused),
        ("IPv4-mapped, public", "::ffff:8.8.8.8", Public),
        ("IPv4-compatible, loopback", "::127.0.0.1", Refused),
        ("IPv4-compatible, benchmarking", "::198.18.0.1", Refused),
        ("IPv4-compatible, public", "::8.8.8.8", Public),
        ("IPv4-translated, loopback", "::ffff:0:127.0.0.1", Refused),
        ("IPv4-translated, private", "::ffff:0:a00:1", Refused),
        ("IPv4-translated, public", "::ffff:0:8.8.8.8", Public),
        ("NAT64, metadata", "64:ff9b::a9fe:a9fe", Refused),
        ("NAT64, reserved", "64:ff9b::240.0.0.1", Refused),
        ("NAT64, public", "64:ff9b::808:808", Public),
        (
            "NAT64 local-use, public inside",
            "64:ff9b:1::808:808",
            Refused,
        ),
        (
            "NAT64 local-use, private inside",
            "64:ff9b:1:a00:1::",
            Refused,
        ),
        ("6to4, loopback", "2002:7f00:1::1", Refused),
        ("6to4, private", "2002:c0a8:101::1", Refused),
        ("6to4, metadata", "2002:a9fe:a9fe::", Refused),
        ("6to4, broadcast", "2002:ffff:ffff::1", Refused),
        ("6to4, public", "2002:808:808::1", Public),
        // Teredo: server 65.54.227.120; client 127.0.0.1 (XOR 0xffffffff).
        (
            "Teredo, loopback client",
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            Refused,
        ),
        // Teredo with server and client both public (8.8.8.8): refused outright.
        (
            "Teredo, public client",
            "2001:0:808:808:8000:63bf:f7f7:f7f7",
            Refused,
        ),
    ];

    #[test]
    fn each_range_and_embedded_form_has_its_verdict() {
        for (range, text, expected) in ADDRESSES {
            let ip: IpAddr = text.parse().unwrap();
            let verdict = if is_public(ip) { Public } else { Refused };
            assert_eq!(verdict, *expected, "{text} ({range})");
        }
    }

    #[test]
    fn an_embedded_address_is_read_from_where_its_form_puts_it() {
        for (text, inside) in [
            ("::ffff:1.2.3.4", "1.2.3.4"),
            ("::1.2.3.4", "1.2.3.4"),
            ("::ffff:0:1.2.3.4", "1.2.3.4"),
            ("64:ff9b::1.2.3.4", "1.2.3.4"),
            ("2002:102:304:5::6", "1.2.3.4"),
        ] {
            let ip: Ipv6Addr = text.parse().unwrap();
            assert_eq!(embedded_v4(ip), Some(inside.parse().unwrap()), "{text}");
        }
        for text in ["2606:4700::1111", "2001:0:808:808::1", "64:ff9b:1::1.2.3.4"] {
            assert_eq!(embedded_v4(text.parse().unwrap()), None, "{text}");
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
}

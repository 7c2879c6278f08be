//! Who a client is behind a reverse proxy (§17): `server.trusted_proxies` lists the networks
//! whose `X-Forwarded-For` is believed. The client is the rightmost address of that header
//! that is not itself a trusted proxy; a request from any other peer is the peer, whatever
//! it claims. The address is what rate limits count and audit records show.

use std::net::IpAddr;

/// A network, `10.0.0.0/8` or `2001:db8::/32` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `ADDRESS[/PREFIX]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let address: IpAddr = address
            .trim()
            .parse()
            .map_err(|_| format!("'{text}' is not an IP network such as 10.0.0.0/8"))?;
        let longest = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => longest,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= longest)
                .ok_or_else(|| format!("'{text}': the prefix must be 0 to {longest}"))?,
        };
        Ok(Self { address, prefix })
    }

    /// Whether `ip` is inside the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (net, ip, bits) = match (self.address, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                (u128::from(n.to_bits()), u128::from(i.to_bits()), 32)
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => (n.to_bits(), i.to_bits(), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        let mask = if shift >= 128 { 0 } else { u128::MAX << shift };
        let mask = if bits == 32 {
            mask & u128::from(u32::MAX)
        } else {
            mask
        };
        net & mask == ip & mask
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the rightmost
/// untrusted address of `forwarded_for` (the peer when there is none).
pub fn client_address(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[Network]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    let mut client = peer;
    for hop in header.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(ip) {
                    break;
                }
            }
            // A hop that is no address ends what can be believed.
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("the text parses")
    }

    #[test]
    fn networks_contain_their_addresses_only() {
        let ten = Network::parse("10.0.0.0/8").expect("valid");
        assert!(ten.contains(ip("10.1.2.3")));
        assert!(!ten.contains(ip("11.0.0.1")));
        assert!(
            Network::parse("192.168.1.7")
                .expect("valid")
                .contains(ip("192.168.1.7"))
        );
        assert!(
            Network::parse("0.0.0.0/0")
                .expect("valid")
                .contains(ip("8.8.8.8"))
        );
        let v6 = Network::parse("2001:db8::/32").expect("valid");
        assert!(v6.contains(ip("2001:db8::1")) && !v6.contains(ip("2001:db9::1")));
        assert!(ten.contains(ip("::ffff:10.0.0.1")), "v4-mapped v6");
        for bad in ["10.0.0.0/33", "ten", "10.0.0.0/x", "::/129"] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted = [Network::parse("127.0.0.0/8").expect("valid")];
        let from = |peer, header| client_address(ip(peer), header, &trusted);
        assert_eq!(from("127.0.0.1", Some("203.0.113.9")), ip("203.0.113.9"));
        assert_eq!(
            from("198.51.100.1", Some("203.0.113.9")),
            ip("198.51.100.1"),
            "untrusted peer"
        );
        assert_eq!(
            from("127.0.0.1", Some("6.6.6.6, 203.0.113.9")),
            ip("203.0.113.9"),
            "rightmost"
        );
        assert_eq!(
            from("127.0.0.1", Some("203.0.113.9, 127.0.0.2")),
            ip("203.0.113.9")
        );
        assert_eq!(from("127.0.0.1", Some("junk")), ip("127.0.0.1"));
        assert_eq!(from("127.0.0.1", None), ip("127.0.0.1"));
        assert_eq!(
            client_address(ip("127.0.0.1"), Some("203.0.113.9"), &[]),
            ip("127.0.0.1")
        );
    }
}

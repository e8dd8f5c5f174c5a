//! Which interfaces mDNS runs on: up, multicast-capable, selected by name or
//! CIDR, loopback only when allowed; per interface its IPv4 addresses
//! (224.0.0.251) and IPv6 addresses (ff02::fb, joined by interface index).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// One interface and its selected addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    /// Interface name (`eth0`).
    pub name: String,
    /// Kernel interface index (IPv6 joins and sends by index; 0 if unknown).
    pub index: u32,
    /// IPv4 addresses with their subnets (to tell which interface a packet came from).
    pub v4: Vec<(Ipv4Addr, Ipv4Net)>,
    /// IPv6 addresses (link-local and others) with their subnets.
    pub v6: Vec<(Ipv6Addr, Ipv6Net)>,
    /// A loopback interface.
    pub loopback: bool,
}

impl Iface {
    /// Every selected address of this interface, IPv4 first.
    pub fn ips(&self) -> Vec<IpAddr> {
        self.v4
            .iter()
            .map(|(ip, _)| IpAddr::V4(*ip))
            .chain(self.v6.iter().map(|(ip, _)| IpAddr::V6(*ip)))
            .collect()
    }

    /// Whether `ip` is one of this interface's addresses.
    pub fn has(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => self.v4.iter().any(|(a, _)| *a == v4),
            IpAddr::V6(v6) => self.v6.iter().any(|(a, _)| *a == v6),
        }
    }

    fn on_link(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => self.v4.iter().any(|(_, n)| n.contains(&v4)),
            IpAddr::V6(v6) => self
                .v6
                .iter()
                .any(|(_, n)| !is_link_local(n.addr()) && n.contains(&v6)),
        }
    }
}

/// `fe80::/10`: valid only with an interface (zone).
pub fn is_link_local(ip: Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

/// `IFF_UP` and `IFF_MULTICAST` from the kernel (Linux); elsewhere assumed set.
fn flags_ok(name: &str) -> bool {
    match std::fs::read_to_string(format!("/sys/class/net/{name}/flags")) {
        Ok(s) => {
            let f = u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).unwrap_or(0);
            f & 0x1 != 0 && f & 0x1000 != 0
        }
        Err(_) => true,
    }
}

/// The interfaces to use. `select`: names (all of that interface's
/// addresses) or CIDRs (the addresses inside); empty means all. `v4`/`v6`:
/// which families to use.
pub fn select(
    select: &[String],
    allow_loopback: bool,
    v4: bool,
    v6: bool,
) -> std::io::Result<Vec<Iface>> {
    let mut out: Vec<Iface> = Vec::new();
    for i in if_addrs::get_if_addrs()? {
        let ip = i.ip();
        let loopback = ip.is_loopback();
        if loopback && !allow_loopback {
            continue;
        }
        // Loopback carries multicast on Linux although it lacks IFF_MULTICAST.
        if !loopback && !flags_ok(&i.name) {
            continue;
        }
        let wanted = select.is_empty()
            || select.iter().any(|s| match s.parse::<IpNet>() {
                Ok(net) => net.contains(&ip),
                Err(_) => *s == i.name,
            });
        if !wanted {
            continue;
        }
        let pos = match out.iter().position(|x| x.name == i.name) {
            Some(p) => p,
            None => {
                out.push(Iface {
                    name: i.name.clone(),
                    index: i.index.unwrap_or(0),
                    v4: Vec::new(),
                    v6: Vec::new(),
                    loopback,
                });
                out.len() - 1
            }
        };
        let iface = &mut out[pos];
        match &i.addr {
            if_addrs::IfAddr::V4(a) if v4 => {
                let prefix = u32::from(a.netmask).leading_ones() as u8;
                let net = Ipv4Net::new(a.ip, prefix).unwrap_or_else(|_| Ipv4Net::from(a.ip));
                iface.v4.push((a.ip, net));
            }
            if_addrs::IfAddr::V6(a) if v6 => {
                let net = Ipv6Net::new(a.ip, a.prefixlen).unwrap_or_else(|_| Ipv6Net::from(a.ip));
                iface.v6.push((a.ip, net));
            }
            _ => {}
        }
    }
    out.retain(|i| !i.v4.is_empty() || !i.v6.is_empty());
    Ok(out)
}

/// The interface a packet from `src` arrived on: a link-local IPv6 source
/// names it by its scope id; otherwise the one holding the address or its subnet.
pub fn of_source(ifaces: &[Iface], src: SocketAddr) -> Option<&Iface> {
    if let SocketAddr::V6(s) = src {
        if is_link_local(*s.ip()) && s.scope_id() != 0 {
            return ifaces.iter().find(|i| i.index == s.scope_id());
        }
    }
    let ip = src.ip();
    ifaces
        .iter()
        .find(|i| i.has(ip))
        .or_else(|| ifaces.iter().find(|i| i.on_link(ip)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddrV6;

    fn iface(name: &str, index: u32, v4: &str, v6: &[&str]) -> Iface {
        let n4: Ipv4Net = v4.parse().unwrap();
        Iface {
            name: name.into(),
            index,
            v4: vec![(n4.addr(), n4)],
            v6: v6
                .iter()
                .map(|s| {
                    let n: Ipv6Net = s.parse().unwrap();
                    (n.addr(), n)
                })
                .collect(),
            loopback: false,
        }
    }

    #[test]
    fn sources_map_to_their_interface() {
        let ifs = [
            iface("eth0", 2, "10.0.0.1/24", &["fe80::1/64", "fd00:1::1/64"]),
            iface("eth1", 3, "10.0.1.1/24", &["fe80::2/64", "fd00:2::1/64"]),
        ];
        let of = |s: &str| of_source(&ifs, s.parse().unwrap()).map(|i| i.name.as_str());
        assert_eq!(of("10.0.1.7:5353"), Some("eth1"));
        assert_eq!(of("[fd00:1::9]:5353"), Some("eth0"));
        let ll = SocketAddr::V6(SocketAddrV6::new("fe80::99".parse().unwrap(), 5353, 0, 3));
        assert_eq!(
            of_source(&ifs, ll).map(|i| i.name.as_str()),
            Some("eth1"),
            "scope id, not the shared fe80::/64"
        );
        let ll0 = SocketAddr::V6(SocketAddrV6::new("fe80::99".parse().unwrap(), 5353, 0, 0));
        assert_eq!(of_source(&ifs, ll0), None, "link-local without a zone");
        assert_eq!(of("192.168.5.5:5353"), None);
        assert!(is_link_local("fe80::1".parse().unwrap()));
        assert!(!is_link_local("fd00::1".parse().unwrap()));
    }
}

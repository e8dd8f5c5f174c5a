//! Which interfaces mDNS runs on: up, multicast-capable, selected by name or
//! CIDR, loopback only when allowed. IPv4 (224.0.0.251).

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};

/// One IPv4 address of one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    /// Interface name (`eth0`).
    pub name: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its subnet (to tell which interface a packet came from).
    pub net: Ipv4Net,
    /// A loopback interface.
    pub loopback: bool,
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

/// The interfaces to use. `select`: names or CIDRs; empty means all.
pub fn select(select: &[String], allow_loopback: bool) -> std::io::Result<Vec<Iface>> {
    let mut out = Vec::new();
    for i in if_addrs::get_if_addrs()? {
        let if_addrs::IfAddr::V4(v4) = &i.addr else {
            continue;
        };
        let loopback = v4.ip.is_loopback();
        if loopback && !allow_loopback {
            continue;
        }
        // Loopback carries multicast on Linux although it lacks IFF_MULTICAST.
        if !loopback && !flags_ok(&i.name) {
            continue;
        }
        let wanted = select.is_empty()
            || select.iter().any(|s| match s.parse::<IpNet>() {
                Ok(net) => net.contains(&IpAddr::V4(v4.ip)),
                Err(_) => *s == i.name,
            });
        if !wanted {
            continue;
        }
        let prefix = u32::from(v4.netmask).leading_ones() as u8;
        let net = Ipv4Net::new(v4.ip, prefix).unwrap_or_else(|_| Ipv4Net::from(v4.ip));
        out.push(Iface {
            name: i.name.clone(),
            ip: v4.ip,
            net,
            loopback,
        });
    }
    Ok(out)
}

/// The interface a packet from `src` arrived on (the one whose subnet holds it).
pub fn of_source(ifaces: &[Iface], src: Ipv4Addr) -> Option<&Iface> {
    ifaces
        .iter()
        .find(|i| i.ip == src)
        .or_else(|| ifaces.iter().find(|i| i.net.contains(&src)))
}

//! The mDNS sockets: 0.0.0.0:5353 and [::]:5353 (IPv6 only) with address and
//! port reuse (so avahi or another responder on the host keeps working),
//! joined to 224.0.0.251 / ff02::fb on every selected interface of that
//! family, multicast loop on (peers on the same host).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::interfaces::Iface;
use crate::Error;

/// The mDNS IPv4 group.
pub const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
/// The mDNS IPv6 group (link-local scope).
pub const GROUP6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfb);

/// The open sockets and the interfaces each family joined.
#[derive(Debug)]
pub struct Sockets {
    port: u16,
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
    /// Interface names joined on IPv4 (by their first address).
    joined4: Vec<String>,
    /// Interface names joined on IPv6 (by index).
    joined6: Vec<String>,
}

/// Opens the sockets on `port` and joins the groups on each interface. A
/// family none of the interfaces has is not opened; a host without IPv6
/// support runs on IPv4 alone.
pub fn open(port: u16, ifaces: &[Iface]) -> Result<Sockets, Error> {
    let mut s = Sockets {
        port,
        v4: None,
        v6: None,
        joined4: Vec::new(),
        joined6: Vec::new(),
    };
    if ifaces.iter().any(|i| !i.v4.is_empty()) {
        let sock = open_v4(port)?;
        for i in ifaces {
            let Some((ip, _)) = i.v4.first() else {
                continue;
            };
            match sock.join_multicast_v4(&GROUP, ip) {
                // EADDRINUSE: the same interface under another name (alias).
                Ok(()) => s.joined4.push(i.name.clone()),
                Err(e) if e.raw_os_error() == Some(98) => s.joined4.push(i.name.clone()),
                Err(e) => {
                    tracing::warn!(interface = %i.name, ip = %ip, error = %e, "cannot join 224.0.0.251 on this interface; skipped")
                }
            }
        }
        if !s.joined4.is_empty() {
            s.v4 = Some(UdpSocket::from_std(sock.into()).map_err(bind_err(port, false))?);
        }
    }
    if ifaces.iter().any(|i| !i.v6.is_empty()) {
        match open_v6(port) {
            Ok(sock) => {
                for i in ifaces.iter().filter(|i| !i.v6.is_empty()) {
                    match sock.join_multicast_v6(&GROUP6, i.index) {
                        Ok(()) => s.joined6.push(i.name.clone()),
                        Err(e) if e.raw_os_error() == Some(98) => s.joined6.push(i.name.clone()),
                        Err(e) => {
                            tracing::warn!(interface = %i.name, index = i.index, error = %e, "cannot join ff02::fb on this interface; skipped")
                        }
                    }
                }
                if !s.joined6.is_empty() {
                    s.v6 = Some(UdpSocket::from_std(sock.into()).map_err(bind_err(port, true))?);
                }
            }
            // EAFNOSUPPORT: IPv6 is disabled on this host.
            Err(Error::Bind { reason, .. }) if reason.contains("os error 97") => {
                tracing::warn!(error = %reason, "IPv6 is not available; mDNS runs on IPv4 only")
            }
            Err(e) => return Err(e),
        }
    }
    if s.v4.is_none() && s.v6.is_none() {
        return Err(Error::NoInterface(
            "could not join 224.0.0.251 or ff02::fb on any selected interface".into(),
        ));
    }
    Ok(s)
}

fn bind_err(port: u16, v6: bool) -> impl Fn(std::io::Error) -> Error {
    move |e| Error::Bind {
        addr: if v6 {
            format!("[::]:{port}")
        } else {
            format!("0.0.0.0:{port}")
        },
        reason: e.to_string(),
    }
}

fn open_v4(port: u16) -> Result<Socket, Error> {
    let err = bind_err(port, false);
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(&err)?;
    s.set_reuse_address(true).map_err(&err)?;
    s.set_reuse_port(true).map_err(&err)?;
    s.set_multicast_loop_v4(true).map_err(&err)?;
    s.set_multicast_ttl_v4(255).map_err(&err)?;
    s.set_nonblocking(true).map_err(&err)?;
    s.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)).into())
        .map_err(&err)?;
    Ok(s)
}

fn open_v6(port: u16) -> Result<Socket, Error> {
    let err = bind_err(port, true);
    let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).map_err(&err)?;
    // Its own socket beside the IPv4 one, not a dual-stack socket.
    s.set_only_v6(true).map_err(&err)?;
    s.set_reuse_address(true).map_err(&err)?;
    s.set_reuse_port(true).map_err(&err)?;
    s.set_multicast_loop_v6(true).map_err(&err)?;
    s.set_multicast_hops_v6(255).map_err(&err)?;
    s.set_nonblocking(true).map_err(&err)?;
    s.bind(&SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0)).into())
        .map_err(&err)?;
    Ok(s)
}

impl Sockets {
    /// Whether `iface` joined the group of this family.
    pub fn joined(&self, iface: &Iface, v6: bool) -> bool {
        let list = if v6 { &self.joined6 } else { &self.joined4 };
        list.contains(&iface.name)
    }

    /// The families in use, for the log.
    pub fn families(&self) -> Vec<&'static str> {
        let mut f = Vec::new();
        if self.v4.is_some() {
            f.push("ipv4");
        }
        if self.v6.is_some() {
            f.push("ipv6");
        }
        f
    }

    /// The next datagram on either socket (each with its own buffer).
    pub async fn recv(
        &self,
        buf4: &mut [u8],
        buf6: &mut [u8],
    ) -> std::io::Result<(bool, usize, SocketAddr)> {
        tokio::select! {
            r = recv_opt(self.v4.as_ref(), buf4) => r.map(|(n, a)| (false, n, a)),
            r = recv_opt(self.v6.as_ref(), buf6) => r.map(|(n, a)| (true, n, a)),
        }
    }

    /// Sends `bytes` to the groups out of `iface`, on each family it joined
    /// (`family`: `Some(v6)` for one only). One socket per family, so the
    /// outgoing interface is set before each send; callers serialize sends.
    pub async fn send_multicast(
        &self,
        iface: &Iface,
        family: Option<bool>,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        let mut first_err = None;
        if let (Some(s), Some((ip, _))) = (&self.v4, iface.v4.first()) {
            if family != Some(true) && self.joined(iface, false) {
                let r = async {
                    socket2::SockRef::from(s).set_multicast_if_v4(ip)?;
                    s.send_to(bytes, SocketAddrV4::new(GROUP, self.port)).await
                }
                .await;
                if let Err(e) = r {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(s) = &self.v6 {
            if family != Some(false) && self.joined(iface, true) {
                let r = async {
                    socket2::SockRef::from(s).set_multicast_if_v6(iface.index)?;
                    s.send_to(bytes, SocketAddrV6::new(GROUP6, self.port, 0, iface.index))
                        .await
                }
                .await;
                if let Err(e) = r {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// A unicast answer to `dst` on the socket of its family.
    pub async fn send_to(&self, bytes: &[u8], dst: SocketAddr) -> std::io::Result<()> {
        let s = match dst.ip() {
            IpAddr::V4(_) => self.v4.as_ref(),
            IpAddr::V6(_) => self.v6.as_ref(),
        };
        match s {
            Some(s) => s.send_to(bytes, dst).await.map(|_| ()),
            None => Err(std::io::Error::other("no socket of that address family")),
        }
    }
}

async fn recv_opt(s: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match s {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

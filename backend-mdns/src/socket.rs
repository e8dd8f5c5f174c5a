//! The mDNS socket: 0.0.0.0:5353 with address and port reuse (so avahi or
//! another responder on the host keeps working), joined to 224.0.0.251 on
//! every selected interface, multicast loop on (peers on the same host).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::interfaces::Iface;
use crate::Error;

/// The mDNS IPv4 group.
pub const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);

/// Opens the shared socket on `port` and joins the group on each interface.
pub fn open(port: u16, ifaces: &[Iface]) -> Result<UdpSocket, Error> {
    let bind_err = |e: std::io::Error| Error::Bind {
        port,
        reason: e.to_string(),
    };
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(bind_err)?;
    s.set_reuse_address(true).map_err(bind_err)?;
    s.set_reuse_port(true).map_err(bind_err)?;
    s.set_multicast_loop_v4(true).map_err(bind_err)?;
    s.set_multicast_ttl_v4(255).map_err(bind_err)?;
    s.set_nonblocking(true).map_err(bind_err)?;
    s.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)).into())
        .map_err(bind_err)?;
    let mut joined = 0;
    for i in ifaces {
        match s.join_multicast_v4(&GROUP, &i.ip) {
            Ok(()) => joined += 1,
            // The same interface with a second address: already joined.
            Err(e) if e.raw_os_error() == Some(98) => joined += 1,
            Err(e) => {
                tracing::warn!(interface = %i.name, ip = %i.ip, error = %e, "cannot join 224.0.0.251 on this interface; skipped")
            }
        }
    }
    if joined == 0 {
        return Err(Error::NoInterface(
            "could not join 224.0.0.251 on any selected interface".into(),
        ));
    }
    UdpSocket::from_std(s.into()).map_err(bind_err)
}

/// Sends `bytes` to the group out of interface `ip` (one socket, so the
/// outgoing interface is set before each send; callers serialize sends).
pub async fn send_multicast(
    sock: &UdpSocket,
    ip: Ipv4Addr,
    port: u16,
    bytes: &[u8],
) -> std::io::Result<()> {
    socket2::SockRef::from(sock).set_multicast_if_v4(&ip)?;
    sock.send_to(bytes, SocketAddrV4::new(GROUP, port)).await?;
    Ok(())
}

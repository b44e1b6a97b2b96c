//! The system-call wrappers every raw-socket user in the project needs (the AF_PACKET port and
//! the host agent's interception layer): each does one call and turns its C-style return into
//! an [`io::Result`]. One copy, so an `EINTR` or `EAGAIN` rule is decided once.
#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// `Err(last OS error)` when `ret` is negative, else `ret`.
pub fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A `read`/`recv` result: `Ok(None)` for "nothing waiting" (`EAGAIN`) and for `EINTR`.
pub fn would_block_to_none(n: isize) -> io::Result<Option<usize>> {
    if n >= 0 {
        return Ok(Some(n.unsigned_abs()));
    }
    let e = io::Error::last_os_error();
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
        _ => Err(e),
    }
}

/// `setsockopt(fd, level, name, &value)`.
pub fn set_opt<T>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` points to `size_of::<T>()` readable bytes for the duration of the call;
    // the kernel only reads them.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Waits until one of `fds` is readable (or in error) or `timeout` passes; `ready[i]` says
/// whether `fds[i]` is. An interrupted wait (`EINTR`) reports none ready.
pub fn poll_readable(fds: &[RawFd], timeout: Duration, ready: &mut Vec<bool>) -> io::Result<()> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `pfds` is a valid array of `pfds.len()` pollfd structs for the duration of the
    // call; the kernel writes only their `revents`.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    ready.clear();
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            ready.resize(fds.len(), false);
            return Ok(());
        }
        return Err(e);
    }
    ready.extend(
        pfds.iter()
            .map(|p| p.revents & (libc::POLLIN | libc::POLLERR) != 0),
    );
    Ok(())
}

/// A TCP connection to `to` (IPv4) from the local address and port `from`, within `timeout`
/// (`bind` then `connect`, which `std::net::TcpStream` cannot do): for a client that must pick
/// its source port, as the lab's imbalance round does to choose which flows it sends. The
/// stream keeps `timeout` as its write timeout.
pub fn tcp_connect_from(
    from: std::net::SocketAddrV4,
    to: std::net::SocketAddrV4,
    timeout: Duration,
) -> io::Result<std::net::TcpStream> {
    use std::os::fd::FromRawFd;
    let sin = |a: std::net::SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: socket() takes no pointers; on success the descriptor is new and owned by
    // nothing else, so the TcpStream may own (and close) it.
    let stream = unsafe {
        let fd = check(libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
        ))?;
        std::net::TcpStream::from_raw_fd(fd)
    };
    // connect() honours the send timeout on Linux.
    stream.set_write_timeout(Some(timeout))?;
    let (a, b) = (sin(from), sin(to));
    // SAFETY: `a` is a valid sockaddr_in of `len` bytes for the duration of the call; the
    // kernel only reads it.
    check(unsafe { libc::bind(stream.as_raw_fd(), (&raw const a).cast(), len) })?;
    // SAFETY: as above, for `b`.
    check(unsafe { libc::connect(stream.as_raw_fd(), (&raw const b).cast(), len) })?;
    Ok(stream)
}

#[cfg(test)]
mod connect_tests {
    use super::*;

    #[test]
    fn a_connection_leaves_from_the_port_asked_for() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to = match listener.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            std::net::SocketAddr::V6(_) => unreachable!(),
        };
        // A free port: bind one, note it, release it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let from = std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port);
        let s = tcp_connect_from(from, to, Duration::from_secs(2)).unwrap();
        assert_eq!(s.local_addr().unwrap(), std::net::SocketAddr::V4(from));
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer, std::net::SocketAddr::V4(from));
        // The same port again, while the first connection lives: refused at bind.
        let e = tcp_connect_from(from, to, Duration::from_secs(2)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    }
}

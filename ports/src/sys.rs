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

//! Thin wrappers over the raw `bpf(2)` system call: create maps, update and delete their
//! elements, load a program (capturing the verifier log on failure), attach it with a BPF link,
//! and run it on a test packet.
//!
//! Each command's attribute block is a `#[repr(C)]` prefix of the kernel's `union bpf_attr`
//! with no implicit padding; the kernel accepts a prefix and zero-fills the rest. Every file
//! descriptor comes back as an [`OwnedFd`], so closing is automatic — in particular dropping the
//! link fd detaches the program.

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
#[cfg(test)]
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;

/// `BPF_MAP_TYPE_HASH`.
pub const MAP_TYPE_HASH: u32 = 1;
/// `BPF_MAP_TYPE_XSKMAP`.
pub const MAP_TYPE_XSKMAP: u32 = 17;
/// `BPF_PROG_TYPE_XDP`.
const PROG_TYPE_XDP: u32 = 6;
/// `BPF_XDP` attach type.
const ATTACH_TYPE_XDP: u32 = 37;
/// `BPF_ANY`: create or update.
const UPDATE_ANY: u64 = 0;

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct InfoByFdAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The start of the kernel's `struct bpf_link_info` for an XDP link: `type`, `id`, `prog_id`,
/// then (8-byte aligned, the union holds 64-bit members) `xdp.ifindex`.
#[repr(C)]
#[derive(Default)]
struct XdpLinkInfo {
    link_type: u32,
    id: u32,
    prog_id: u32,
    _align: u32,
    ifindex: u32,
    _rest: [u32; 11],
}

#[cfg(test)]
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
}

/// Calls `bpf(cmd, attr, sizeof attr)`.
fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, exclusively borrowed `#[repr(C)]` prefix of `union bpf_attr`
    // for `cmd`, and we pass its exact size; every pointer stored inside it points to memory
    // the caller keeps alive for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn fd_from(ret: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
    unsafe { OwnedFd::from_raw_fd(ret as i32) }
}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let n = name.len().min(15);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

/// Creates a map.
pub fn map_create(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    name: &str,
) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_name: name16(name),
        ..MapCreateAttr::default()
    };
    sys_bpf(BPF_MAP_CREATE, &mut attr).map(fd_from)
}

/// Creates or replaces `key → value`. The slices must have the map's key and value sizes.
pub fn map_update(map: &OwnedFd, key: &[u8], value: &[u8]) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_ptr() as u64,
        flags: UPDATE_ANY,
        ..MapElemAttr::default()
    };
    sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
}

/// Deletes `key` (a missing key is not an error).
pub fn map_delete(map: &OwnedFd, key: &[u8]) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        ..MapElemAttr::default()
    };
    match sys_bpf(BPF_MAP_DELETE_ELEM, &mut attr) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other.map(drop),
    }
}

/// Why a program did not load.
#[derive(Debug)]
pub struct LoadError {
    /// The `bpf()` error.
    pub error: io::Error,
    /// The verifier's log (empty when the failure happened before verification).
    pub log: String,
}

/// Loads an XDP program. On failure loads it again with the verifier log enabled and returns
/// that log.
pub fn prog_load_xdp(bytecode: &[u8], name: &str) -> Result<OwnedFd, LoadError> {
    let license = c"GPL";
    let attempt = |log: &mut [u8], level: u32| {
        let mut attr = ProgLoadAttr {
            prog_type: PROG_TYPE_XDP,
            insn_cnt: (bytecode.len() / 8) as u32,
            insns: bytecode.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: level,
            log_size: log.len() as u32,
            log_buf: if log.is_empty() {
                0
            } else {
                log.as_mut_ptr() as u64
            },
            prog_name: name16(name),
            expected_attach_type: ATTACH_TYPE_XDP,
            ..ProgLoadAttr::default()
        };
        sys_bpf(BPF_PROG_LOAD, &mut attr).map(fd_from)
    };
    match attempt(&mut [], 0) {
        Ok(fd) => Ok(fd),
        Err(error) => {
            let mut log = vec![0u8; 1 << 20];
            let _ = attempt(&mut log, 1);
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            Err(LoadError {
                error,
                log: String::from_utf8_lossy(&log[..end]).into_owned(),
            })
        }
    }
}

/// Attaches an XDP program to `ifindex` with a BPF link (`flags` are `XDP_FLAGS_*`; 0 lets
/// the kernel use the driver's native hook when it has one). Dropping the link detaches it.
pub fn link_create_xdp(prog: &OwnedFd, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: ATTACH_TYPE_XDP,
        flags,
    };
    sys_bpf(BPF_LINK_CREATE, &mut attr).map(fd_from)
}

/// The interface an XDP link is attached to, or `None` once the link was detached (the
/// interface was deleted, or someone ran `bpftool link detach`): the kernel reports
/// ifindex 0 for a detached XDP link.
pub fn xdp_link_ifindex(link: &OwnedFd) -> io::Result<Option<u32>> {
    let mut info = XdpLinkInfo::default();
    let mut attr = InfoByFdAttr {
        bpf_fd: link.as_raw_fd() as u32,
        info_len: std::mem::size_of::<XdpLinkInfo>() as u32,
        info: &mut info as *mut XdpLinkInfo as u64,
    };
    sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok((info.ifindex != 0).then_some(info.ifindex))
}

#[cfg(test)]
/// Runs `prog` once on `packet` (`BPF_PROG_TEST_RUN`) and returns its return value.
pub fn prog_test_run(prog: &OwnedFd, packet: &[u8]) -> io::Result<u32> {
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: packet.len() as u32,
        data_in: packet.as_ptr() as u64,
        repeat: 1,
        ..TestRunAttr::default()
    };
    sys_bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    Ok(attr.retval)
}

//! The two bpf(2) calls aya 0.14 does not expose: reading a pinned link's interface index (to tell a
//! live attachment from one whose interface went away) and the bpffs check of the pin directory.

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
/// `BPF_FS_MAGIC` from linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Link types from `enum bpf_link_type`.
pub const LINK_TYPE_XDP: u32 = 6;
pub const LINK_TYPE_TCX: u32 = 11;

/// What the kernel says about a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawLinkInfo {
    pub link_type: u32,
    pub id: u32,
    pub prog_id: u32,
    /// For XDP and TCX links; 0 once the interface is gone.
    pub ifindex: u32,
}

fn bpf(cmd: libc::c_long, attr: &mut [u64], size: usize) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a zeroed, 8-byte aligned buffer at least `size` bytes long, laid out as the
    // kernel's `union bpf_attr` member for `cmd`.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), size) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Opens a pinned BPF object.
pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // struct { __aligned_u64 pathname; __u32 bpf_fd; __u32 file_flags; }
    let mut attr = [0u64; 2];
    attr[0] = c.as_ptr() as u64;
    let fd = bpf(BPF_OBJ_GET, &mut attr, 16)?;
    // SAFETY: the kernel returned a new fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `BPF_OBJ_GET_INFO_BY_FD` on a link.
pub fn link_info(fd: &OwnedFd) -> io::Result<RawLinkInfo> {
    use std::os::fd::AsRawFd as _;
    // struct bpf_link_info: type, id, prog_id, then a union aligned to 8 whose xdp and tcx members
    // start with `__u32 ifindex`.
    let mut info = [0u64; 16];
    let mut attr = [0u64; 2];
    // struct { __u32 bpf_fd; __u32 info_len; __aligned_u64 info; }
    attr[0] = fd.as_raw_fd() as u32 as u64 | ((size_of_val(&info) as u64) << 32);
    attr[1] = info.as_mut_ptr() as u64;
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr, 16)?;
    let word = |i: usize| -> u32 {
        let w = info[i / 2];
        if i.is_multiple_of(2) {
            w as u32
        } else {
            (w >> 32) as u32
        }
    };
    Ok(RawLinkInfo {
        link_type: word(0),
        id: word(1),
        prog_id: word(2),
        ifindex: word(4),
    })
}

/// Whether `path` lives on a BPF filesystem.
pub fn is_bpffs(path: &Path) -> io::Result<bool> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: zeroed statfs is a valid out-parameter.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated, `st` is writable.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

/// Interface index of `name`, or None if there is no such interface.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is NUL-terminated.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// Every interface of this network namespace: `(ifindex, name)`.
pub fn interfaces() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    // SAFETY: if_nameindex returns a NULL-terminated array we free with if_freenameindex.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return out;
        }
        let mut p = list;
        while (*p).if_index != 0 && !(*p).if_name.is_null() {
            let name = std::ffi::CStr::from_ptr((*p).if_name)
                .to_string_lossy()
                .into_owned();
            out.push(((*p).if_index, name));
            p = p.add(1);
        }
        libc::if_freenameindex(list);
    }
    out
}

/// The conventional bpffs mount point.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";

/// Mounts a BPF filesystem at `/sys/fs/bpf` if nothing is mounted there yet (as systemd does at
/// boot; minimal systems and containers often lack it). Returns whether it mounted one.
pub fn ensure_bpffs_root() -> io::Result<bool> {
    let root = Path::new(BPFFS_ROOT);
    if !root.is_dir() || is_bpffs(root)? {
        return Ok(false);
    }
    let c = |s: &str| CString::new(s).expect("static string");
    let (src, target, fstype) = (c("bpf"), c(BPFFS_ROOT), c("bpf"));
    // SAFETY: NUL-terminated strings; no data argument.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // Pins are for root only, as systemd mounts it.
    let _ = std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o700));
    Ok(true)
}

/// The driver behind an interface (`veth`, `virtio_net`, ...), from the ETHTOOL_GDRVINFO ioctl.
pub fn driver_name(iface: &str) -> Option<String> {
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        data: *mut u8,
        _pad: [u8; 16],
    }
    const ETHTOOL_GDRVINFO: u32 = 0x3;
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    if iface.len() >= 16 {
        return None;
    }
    // struct ethtool_drvinfo is 196 bytes: cmd, then `char driver[32]`.
    let mut info = [0u8; 196];
    info[..4].copy_from_slice(&ETHTOOL_GDRVINFO.to_ne_bytes());
    let mut req = IfReq {
        name: [0; 16],
        data: info.as_mut_ptr(),
        _pad: [0; 16],
    };
    req.name[..iface.len()].copy_from_slice(iface.as_bytes());
    // SAFETY: a plain datagram socket; the ioctl writes into `info`, which outlives the call.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let r = libc::ioctl(fd, SIOCETHTOOL, &mut req);
        libc::close(fd);
        if r < 0 {
            return None;
        }
    }
    let d = &info[4..36];
    let end = d.iter().position(|b| *b == 0).unwrap_or(d.len());
    Some(String::from_utf8_lossy(&d[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_no_ifindex_surprises() {
        assert!(ifindex("lo").is_some());
        assert!(ifindex("nosuchif0").is_none());
        assert!(ifindex("bad\0name").is_none());
        assert_eq!(driver_name("nosuchif0"), None);
    }
}

//! Whole Ethernet frames into a veth from inside a namespace (AF_PACKET): a send-only link for
//! floods of crafted SYNs with spoofed sources, and the socket and send calls other raw sockets of
//! the tests share. Sockets close on drop.

use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

/// The MAC address of `ifname` in namespace `ns`.
pub fn mac_of(ns: &str, ifname: &str) -> [u8; 6] {
    let out = std::process::Command::new("ip")
        .args(["-n", ns, "-j", "link", "show", "dev", ifname])
        .output()
        .expect("ip link show");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
    let text = v[0]["address"].as_str().expect("a MAC address");
    let mut mac = [0u8; 6];
    for (i, part) in text.split(':').enumerate() {
        mac[i] = u8::from_str_radix(part, 16).expect("hex MAC");
    }
    mac
}

/// A send-only raw socket on one interface.
pub struct RawLink {
    fd: OwnedFd,
    ifindex: i32,
}

impl RawLink {
    /// Must run on a thread inside the interface's namespace.
    pub fn open(ifname: &str) -> Self {
        // Protocol 0: this socket sends only, it never receives a copy of the traffic.
        let (fd, ifindex) = packet_socket(ifname, 0);
        Self { fd, ifindex }
    }

    /// Sends one frame (destination MAC in its first six bytes); false when the kernel refused it
    /// (a full queue), which a flood may ignore.
    pub fn send(&self, frame: &[u8]) -> bool {
        send_frame(&self.fd, self.ifindex, frame) == frame.len() as isize
    }
}

/// An AF_PACKET raw socket for `proto` (ETH_P_* in network byte order; 0 sends only and never
/// receives) and the index of `ifname`. Must run on a thread inside the interface's namespace.
pub fn packet_socket(ifname: &str, proto: i32) -> (OwnedFd, i32) {
    // SAFETY: plain socket call; the fd is owned right away.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto) };
    assert!(
        raw >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let name = std::ffi::CString::new(ifname).unwrap();
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
    assert!(ifindex > 0, "no interface {ifname}");
    (fd, ifindex)
}

/// Sends one whole frame (destination MAC in its first six bytes) out of `ifindex`: what
/// `sendto` returned.
pub fn send_frame(fd: &OwnedFd, ifindex: i32, frame: &[u8]) -> isize {
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&frame[..6]);
    // SAFETY: the buffer and address are valid for the lengths given.
    unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    }
}

//! The two tiny XDP programs the flood benchmark needs besides enforcer's, assembled here (each is
//! `r0 = verdict; exit`, so no object file or compiler is involved) and driven through raw bpf(2):
//! an XDP drop-all attached to the receiving veth (the floor every filter is compared with), and
//! the generator that makes frames arrive as XDP frames: BPF_PROG_RUN with
//! BPF_F_TEST_XDP_LIVE_FRAMES of an `XDP_TX` program on the sending veth, which the kernel turns
//! into a redirect out of that device, so the peer receives `xdp_frame`s through `ndo_xdp_xmit`
//! (what xdp-trafficgen does, which only sends UDP).

use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

use anyhow::{bail, Result};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

pub const XDP_DROP: i32 = 1;
pub const XDP_TX: i32 = 3;

fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> Result<i64> {
    // SAFETY: `attr` is a zero-padded bpf_attr prefix for `cmd`; pointers in it outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as u32,
        )
    };
    if rc < 0 {
        bail!("bpf({cmd}): {}", std::io::Error::last_os_error());
    }
    Ok(rc)
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
}

/// Loads the XDP program `r0 = verdict; exit`.
pub fn load_verdict(verdict: i32, name: &str) -> Result<OwnedFd> {
    // mov64 r0, imm (BPF_ALU64 | BPF_MOV | BPF_K), then exit (BPF_JMP | BPF_EXIT).
    let insns: [u64; 2] = [0xb7 | (u64::from(verdict as u32) << 32), 0x95];
    let license = c"MIT";
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    for (d, s) in attr.prog_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    let fd = sys_bpf(BPF_PROG_LOAD, &mut attr)?;
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// Attaches `prog` to `ifindex` (of the calling thread's namespace) in native mode through a BPF
/// link: it is detached when the returned descriptor is closed, so nothing outlives the benchmark.
pub fn attach_native(prog: &OwnedFd, ifindex: u32) -> Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags: XDP_FLAGS_DRV_MODE,
    };
    let fd = sys_bpf(BPF_LINK_CREATE, &mut attr)?;
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

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
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// struct xdp_md as BPF_PROG_RUN takes it: only the ingress device is set.
#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

/// Sends `frame` `count` times out of `ifindex` (of the calling thread's namespace) as XDP frames,
/// on the calling CPU. `tx` is an `XDP_TX` program from [`load_verdict`].
pub fn live_frames(tx: &OwnedFd, ifindex: u32, frame: &[u8], count: u32) -> Result<()> {
    let mut ctx = XdpMd {
        data_end: frame.len() as u32,
        ingress_ifindex: ifindex,
        ..Default::default()
    };
    let mut attr = TestRunAttr {
        prog_fd: tx.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat: count,
        ctx_size_in: std::mem::size_of::<XdpMd>() as u32,
        ctx_in: (&mut ctx as *mut XdpMd) as u64,
        flags: BPF_F_TEST_XDP_LIVE_FRAMES,
        ..Default::default()
    };
    sys_bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    Ok(())
}

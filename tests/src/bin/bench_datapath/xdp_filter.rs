//! xdp-filter (Debian's xdp-tools) as the peer in the datapath benchmark: loaded in skb mode on a
//! veth inside a private network namespace, each command run in a private mount namespace whose
//! /sys/fs/bpf is this benchmark's own bpffs (xdp-filter pins under /sys/fs/bpf/xdp-filter whatever
//! LIBXDP_BPFFS says: without that, a run left the directory in the machine's bpffs and could
//! collide with another user of xdp-filter), filled to its 10,000-entry cap, and timed through
//! BPF_PROG_TEST_RUN on the very program it loaded (found by id, kept open by fd). Everything is
//! removed on drop, on failure too.

use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context as _, Result};
use tests::netns::{ip, unique, Netns};

/// Its hash maps' `max_entries`.
pub const CAP: u32 = 10_000;

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;

pub struct XdpFilter {
    pub label: &'static str,
    /// xdp-filter's own program, held open past its unload.
    prog: Option<OwnedFd>,
    _ns: Netns,
    bpffs: PathBuf,
}

fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> Result<i64> {
    // SAFETY: `attr` is a zero-padded bpf_attr prefix for `cmd`.
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
struct IdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

fn fd_by_id(cmd: libc::c_long, id: u32) -> Result<OwnedFd> {
    let fd = sys_bpf(
        cmd,
        &mut IdAttr {
            id,
            ..Default::default()
        },
    )?;
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

impl XdpFilter {
    /// Loads xdp-filter (`features` as given to `-f`, `None` = its default build), adds `v4` and
    /// `v6` source addresses (at most [`CAP`] each) and keeps its program open.
    pub fn load(
        label: &'static str,
        features: Option<&str>,
        v4: &[[u8; 4]],
        v6: &[[u8; 16]],
    ) -> Result<Self> {
        let ns = Netns::new(unique(&format!("xf{}", features.map_or(0, |f| f.len()))));
        ip(&[
            "-n", &ns.name, "link", "add", "xf0", "type", "veth", "peer", "name", "xf1",
        ]);
        ip(&["-n", &ns.name, "link", "set", "xf0", "up"]);
        let bpffs = std::env::temp_dir().join(format!("{}-bpffs", ns.name));
        std::fs::create_dir_all(&bpffs)?;
        let mounted = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&bpffs)
            .status()?;
        if !mounted.success() {
            bail!("mounting a private bpffs on {}", bpffs.display());
        }
        // From here on, drop cleans up.
        let mut me = Self {
            label,
            prog: None,
            _ns: ns,
            bpffs,
        };
        let mut args = vec!["load", "-m", "skb"];
        if let Some(f) = features {
            args.extend(["-f", f]);
        }
        args.push("xf0");
        me.xdp_filter(&args)?;
        let prog_id = me.prog_id()?;
        me.prog = Some(fd_by_id(BPF_PROG_GET_FD_BY_ID, prog_id)?);
        if let Some(first) = v4.first() {
            me.xdp_filter(&[
                "ip",
                &std::net::Ipv4Addr::from(*first).to_string(),
                "-m",
                "src",
            ])?;
            me.fill(prog_id, "filter_ipv4", v4.iter().map(|a| a.to_vec()))?;
        }
        if let Some(first) = v6.first() {
            me.xdp_filter(&[
                "ip",
                &std::net::Ipv6Addr::from(*first).to_string(),
                "-m",
                "src",
            ])?;
            me.fill(prog_id, "filter_ipv6", v6.iter().map(|a| a.to_vec()))?;
        }
        Ok(me)
    }

    fn xdp_filter(&self, args: &[&str]) -> Result<()> {
        clear_stale_lock();
        // The private bpffs is bind-mounted over /sys/fs/bpf in a mount namespace that lives as
        // long as the command: its pins persist between commands and never reach the machine's.
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self._ns.path()))
            .args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind "$0" /sys/fs/bpf && exec xdp-filter "$@""#)
            .arg(&self.bpffs)
            .args(args)
            .env("LIBXDP_BPFFS", &self.bpffs)
            .env("LIBXDP_SKIP_DISPATCHER", "1")
            .output()
            .context("running xdp-filter (Debian package xdp-tools)")?;
        if !out.status.success() {
            bail!(
                "xdp-filter {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn prog_id(&self) -> Result<u32> {
        let out = Command::new("ip")
            .args(["-n", &self._ns.name, "-j", "link", "show", "dev", "xf0"])
            .output()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        v[0]["xdp"]["prog"]["id"]
            .as_u64()
            .map(|id| id as u32)
            .with_context(|| format!("no XDP program on xf0: {v}"))
    }

    /// Copies the value xdp-filter wrote for the first key to every other key, straight into its
    /// per-CPU hash map (10,000 process starts would take minutes).
    fn fill(&self, prog_id: u32, map: &str, keys: impl Iterator<Item = Vec<u8>>) -> Result<()> {
        let out = Command::new("bpftool")
            .args(["-j", "prog", "show", "id", &prog_id.to_string()])
            .output()
            .context("bpftool (Debian package bpftool)")?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let ids: Vec<u64> = v["map_ids"]
            .as_array()
            .context("map_ids")?
            .iter()
            .filter_map(|x| x.as_u64())
            .collect();
        let mut found = None;
        for id in ids {
            let out = Command::new("bpftool")
                .args(["-j", "map", "show", "id", &id.to_string()])
                .output()?;
            let m: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            if m["name"] == map {
                found = Some((id as u32, m["bytes_value"].as_u64().unwrap_or(8) as usize));
            }
        }
        let (id, value_size) = found.with_context(|| format!("xdp-filter map {map}"))?;
        let fd = fd_by_id(BPF_MAP_GET_FD_BY_ID, id)?;
        let cpus = libc_nprocs_conf();
        let mut value = vec![0u8; value_size.next_multiple_of(8) * cpus];
        let mut keys = keys.peekable();
        let first = keys.peek().context("no keys")?.clone();
        sys_bpf(
            BPF_MAP_LOOKUP_ELEM,
            &mut ElemAttr {
                map_fd: fd.as_raw_fd() as u32,
                key: first.as_ptr() as u64,
                value: value.as_mut_ptr() as u64,
                ..Default::default()
            },
        )
        .context("reading the entry xdp-filter wrote")?;
        for (n, key) in keys.enumerate() {
            if n as u32 >= CAP {
                break;
            }
            sys_bpf(
                BPF_MAP_UPDATE_ELEM,
                &mut ElemAttr {
                    map_fd: fd.as_raw_fd() as u32,
                    key: key.as_ptr() as u64,
                    value: value.as_ptr() as u64,
                    ..Default::default()
                },
            )
            .with_context(|| format!("filling {map} (entry {n})"))?;
        }
        Ok(())
    }

    fn prog_fd(&self) -> Result<u32> {
        Ok(self
            .prog
            .as_ref()
            .context("xdp-filter not loaded")?
            .as_raw_fd() as u32)
    }

    /// Average ns per run of `repeat` runs of xdp-filter's program on `frame`.
    pub fn time(&self, frame: &[u8], repeat: u32) -> Result<f64> {
        #[repr(C)]
        #[derive(Default)]
        struct TestAttr {
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
        let mut attr = TestAttr {
            prog_fd: self.prog_fd()?,
            data_size_in: frame.len() as u32,
            data_in: frame.as_ptr() as u64,
            repeat,
            ..Default::default()
        };
        sys_bpf(BPF_PROG_TEST_RUN, &mut attr).context("test-running xdp-filter")?;
        Ok(attr.duration as f64)
    }

    /// The XDP action xdp-filter returns for `frame` (1 = drop, 2 = pass).
    pub fn verdict(&self, frame: &[u8]) -> Result<u32> {
        #[repr(C)]
        #[derive(Default)]
        struct TestAttr {
            prog_fd: u32,
            retval: u32,
            data_size_in: u32,
            data_size_out: u32,
            data_in: u64,
            data_out: u64,
            repeat: u32,
            duration: u32,
        }
        let mut attr = TestAttr {
            prog_fd: self.prog_fd()?,
            data_size_in: frame.len() as u32,
            data_in: frame.as_ptr() as u64,
            repeat: 1,
            ..Default::default()
        };
        sys_bpf(BPF_PROG_TEST_RUN, &mut attr).context("test-running xdp-filter")?;
        Ok(attr.retval)
    }
}

fn libc_nprocs_conf() -> usize {
    // Per-CPU map values are sized by possible CPUs.
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| s.trim().rsplit(['-', ',']).next()?.parse::<usize>().ok())
        .map_or(1, |last| last + 1)
}

impl Drop for XdpFilter {
    fn drop(&mut self) {
        let _ = self.xdp_filter(&["unload", "xf0"]);
        let _ = Command::new("umount").arg(&self.bpffs).status();
        let _ = std::fs::remove_dir(&self.bpffs);
        // The namespace (and the veth in it) goes when `_ns` drops.
    }
}

/// xdp-filter takes `/run/xdp-filter.lck` for the length of each command. A copy killed mid-command
/// leaves the file behind, and Debian's build then refuses every later run ("Unable to read PID
/// from lockfile: File exists": it reads a stale `errno` after parsing the PID) instead of
/// replacing a dead holder's lock as intended. Remove the file only when its PID is not running.
fn clear_stale_lock() {
    const LOCK: &str = "/run/xdp-filter.lck";
    let Ok(text) = std::fs::read_to_string(LOCK) else {
        return;
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return;
    };
    // SAFETY: signal 0 only checks that the process exists.
    let gone = pid > 0
        && unsafe { libc::kill(pid, 0) } != 0
        && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
    if gone {
        eprintln!("removing {LOCK} left by pid {pid}, which is not running");
        let _ = std::fs::remove_file(LOCK);
    }
}

//! Bulk writes to the policy maps with `BPF_MAP_UPDATE_BATCH` / `BPF_MAP_DELETE_BATCH` (aya 0.14 has
//! no batch calls): one syscall per [`CHUNK`] entries instead of one per entry. Where a kernel or map
//! type lacks them (EINVAL, ENOTSUPP), the same entries are written one by one, so callers never care.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd as _, OwnedFd};

use enforcer_common::maps as names;
use enforcer_common::PolicyEntry;

use super::maps::PinDir;
use crate::net::Prefix;

/// Entries per syscall: large enough that the syscall cost vanishes, small enough that the key and
/// value buffers stay a few MiB.
pub const CHUNK: usize = 1 << 15;

const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
/// The kernel's internal "operation not supported" (not in libc).
const ENOTSUPP: i32 = 524;

/// The four policy maps by index: v4 hosts, v4 prefixes, v6 hosts, v6 prefixes.
const MAPS: [&str; 4] = [
    names::POLICY_V4_HOSTS,
    names::POLICY_V4_PREFIXES,
    names::POLICY_V6_HOSTS,
    names::POLICY_V6_PREFIXES,
];

/// Which of the four maps holds `p` (index into the counts of [`check_room`]).
pub fn map_of(p: &Prefix) -> usize {
    match (p.is_ipv4(), p.is_host()) {
        (true, true) => 0,
        (true, false) => 1,
        (false, true) => 2,
        (false, false) => 3,
    }
}

/// Refuses a bulk change before anything is written when the maps could not hold the result.
/// `current` = entries each map holds now ([`map_of`] order), `present` = whether a prefix has an
/// entry (asked for each removed prefix, then each added one, in order), `capacity` = what each map
/// holds at most ([`BatchMaps::capacity`]). The error names the first prefix that would not fit.
pub fn check_room(
    current: [usize; 4],
    mut present: impl FnMut(&Prefix) -> bool,
    adding: &[Prefix],
    removing: &[Prefix],
    capacity: [u32; 4],
) -> Result<(), super::MapFull> {
    let mut counts = current.map(|c| c as i64);
    // Only a replaced list removes anything: a plain import skips this. A parsed list is sorted,
    // so no set of a million prefixes is needed to look them up.
    let sorted = !removing.is_empty() && adding.windows(2).all(|w| w[0] < w[1]);
    let adding_set: std::collections::HashSet<&Prefix> = if removing.is_empty() || sorted {
        Default::default()
    } else {
        adding.iter().collect()
    };
    let added = |p: &Prefix| {
        if sorted {
            adding.binary_search(p).is_ok()
        } else {
            adding_set.contains(p)
        }
    };
    for p in removing {
        if present(p) && !added(p) {
            counts[map_of(p)] -= 1;
        }
    }
    for p in adding {
        if !present(p) {
            let m = map_of(p);
            counts[m] += 1;
            if counts[m] > i64::from(capacity[m]) {
                return Err(super::MapFull {
                    prefix: *p,
                    max: capacity[m],
                });
            }
        }
    }
    Ok(())
}

/// Key bytes of a prefix in the map that holds it, and that map's index in [`MAPS`]: exact hosts are
/// the address bytes; prefix keys are the bytes of `PrefixKeyV4` / `PrefixKeyV6` (u32 length in
/// host order, for IPv6 four zero bytes, then the masked address).
pub fn key_of(p: &Prefix) -> (usize, Vec<u8>) {
    let len = u32::from(p.len()).to_ne_bytes();
    match (p.addr(), p.is_host()) {
        (IpAddr::V4(a), true) => (0, a.octets().to_vec()),
        (IpAddr::V6(a), true) => (2, a.octets().to_vec()),
        (IpAddr::V4(a), false) => (1, [&len[..], &a.octets()].concat()),
        (IpAddr::V6(a), false) => (3, [&len[..], &[0; 4], &a.octets()].concat()),
    }
}

fn entry_bytes(e: &PolicyEntry) -> &[u8] {
    // SAFETY: PolicyEntry is #[repr(C)], Copy, with no padding (size asserted in enforcer-common: u32 pairs, then u64s).
    unsafe {
        std::slice::from_raw_parts(
            (e as *const PolicyEntry).cast::<u8>(),
            size_of::<PolicyEntry>(),
        )
    }
}

fn bpf(cmd: libc::c_long, attr: &mut [u64; 7]) -> io::Result<()> {
    // SAFETY: `attr` is 56 zero-initialised, 8-byte aligned bytes laid out as the `batch` (or
    // element) member of `union bpf_attr`; the pointers in it outlive the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), size_of_val(attr)) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) | Some(ENOTSUPP)
    )
}

/// `BPF_MAP_*_BATCH` on `count` keys (and values): returns how many the kernel processed and the
/// error that stopped it, if any.
fn batch(
    cmd: libc::c_long,
    fd: &OwnedFd,
    keys: &[u8],
    values: Option<&[u8]>,
    count: usize,
) -> (usize, Option<io::Error>) {
    // struct { in_batch; out_batch; keys; values; u32 count; u32 map_fd; elem_flags; flags; }
    let mut attr = [0u64; 7];
    attr[2] = keys.as_ptr() as u64;
    attr[3] = values.map_or(0, |v| v.as_ptr() as u64);
    attr[4] = count as u64 | (u64::from(fd.as_raw_fd() as u32) << 32);
    match bpf(cmd, &mut attr) {
        Ok(()) => (count, None),
        // On failure the kernel reports in `count` how many elements it handled first.
        Err(e) => (((attr[4] & 0xffff_ffff) as usize).min(count), Some(e)),
    }
}

fn elem(cmd: libc::c_long, fd: &OwnedFd, key: &[u8], value: Option<&[u8]>) -> io::Result<()> {
    // struct { u32 map_fd; (pad) key; value; flags; }
    let mut attr = [0u64; 7];
    attr[0] = u64::from(fd.as_raw_fd() as u32);
    attr[1] = key.as_ptr() as u64;
    attr[2] = value.map_or(0, |v| v.as_ptr() as u64);
    bpf(cmd, &mut attr)
}

/// Raw descriptors of the four policy maps (the caller has checked them against the contract).
pub struct BatchMaps {
    fds: [OwnedFd; 4],
}

/// What went wrong in a bulk write, naming the prefix and the fix when a map is full.
fn write_error(e: io::Error, p: &Prefix) -> anyhow::Error {
    if matches!(e.raw_os_error(), Some(libc::E2BIG) | Some(libc::ENOSPC)) {
        anyhow::anyhow!(
            "the policy map for {p} is full; remove entries (`enforcer unset --from FILE` or `--list NAME`) first"
        )
    } else {
        anyhow::Error::from(e).context(format!("writing the entry for {p}"))
    }
}

impl BatchMaps {
    pub fn open(pins: &PinDir) -> anyhow::Result<Self> {
        let open = |name: &str| {
            super::sys::obj_get(&pins.map(name))
                .map_err(|e| anyhow::Error::from(e).context(format!("opening pinned map {name}")))
        };
        Ok(Self {
            fds: [
                open(MAPS[0])?,
                open(MAPS[1])?,
                open(MAPS[2])?,
                open(MAPS[3])?,
            ],
        })
    }

    /// `max_entries` of each map in [`map_of`] order (`[capacity]` sizes them when they are made).
    pub fn capacity(&self) -> anyhow::Result<[u32; 4]> {
        let mut out = [0u32; 4];
        for (i, fd) in self.fds.iter().enumerate() {
            // struct bpf_map_info: type, id, key_size, value_size, max_entries, ...
            let mut info = [0u32; 32];
            let mut attr = [0u64; 7];
            attr[0] = u64::from(fd.as_raw_fd() as u32) | ((size_of_val(&info) as u64) << 32);
            attr[1] = info.as_mut_ptr() as u64;
            bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).map_err(|e| {
                anyhow::Error::from(e).context(format!("reading the size of {}", MAPS[i]))
            })?;
            out[i] = info[4];
        }
        Ok(out)
    }

    /// Inserts or replaces every entry. Stops at the first entry the kernel refuses (entries
    /// before it are written).
    pub fn upsert(&self, entries: &[(Prefix, PolicyEntry)]) -> anyhow::Result<()> {
        for (map, group) in grouped(entries.iter().map(|(p, e)| (p, Some(e)))) {
            for chunk in group.chunks(CHUNK) {
                let mut keys = Vec::with_capacity(chunk.len() * 20);
                let mut values = Vec::with_capacity(chunk.len() * size_of::<PolicyEntry>());
                for (_, key, e) in chunk {
                    keys.extend_from_slice(key);
                    values.extend_from_slice(entry_bytes(e.expect("upsert has values")));
                }
                let fd = &self.fds[map];
                let (done, err) =
                    batch(BPF_MAP_UPDATE_BATCH, fd, &keys, Some(&values), chunk.len());
                match err {
                    None => {}
                    Some(e) if done == 0 && unsupported(&e) => {
                        for (p, key, e) in chunk {
                            let v = entry_bytes(e.expect("upsert has values"));
                            elem(BPF_MAP_UPDATE_ELEM, fd, key, Some(v))
                                .map_err(|err| write_error(err, p))?;
                        }
                    }
                    Some(e) => return Err(write_error(e, chunk[done.min(chunk.len() - 1)].0)),
                }
            }
        }
        Ok(())
    }

    /// Removes the entries for exactly these prefixes; returns how many existed.
    pub fn remove(&self, prefixes: &[Prefix]) -> anyhow::Result<usize> {
        let mut removed = 0;
        for (map, group) in grouped(prefixes.iter().map(|p| (p, None))) {
            let fd = &self.fds[map];
            let mut rest = &group[..];
            while !rest.is_empty() {
                let chunk = &rest[..rest.len().min(CHUNK)];
                let keys: Vec<u8> = chunk
                    .iter()
                    .flat_map(|(_, k, _)| k.iter().copied())
                    .collect();
                let (done, err) = batch(BPF_MAP_DELETE_BATCH, fd, &keys, None, chunk.len());
                removed += done;
                match err {
                    None => rest = &rest[done..],
                    // The kernel stops at a key that is not there: skip it and go on.
                    Some(e) if e.raw_os_error() == Some(libc::ENOENT) => rest = &rest[done + 1..],
                    Some(e) if done == 0 && unsupported(&e) => {
                        for (p, key, _) in chunk {
                            match elem(BPF_MAP_DELETE_ELEM, fd, key, None) {
                                Ok(()) => removed += 1,
                                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                                Err(e) => {
                                    return Err(anyhow::Error::from(e)
                                        .context(format!("removing the entry for {p}")))
                                }
                            }
                        }
                        rest = &rest[chunk.len()..];
                    }
                    Some(e) => {
                        return Err(anyhow::Error::from(e)
                            .context(format!("removing the entry for {}", chunk[done].0)))
                    }
                }
            }
        }
        Ok(removed)
    }
}

type Keyed<'a> = (&'a Prefix, Vec<u8>, Option<&'a PolicyEntry>);

/// Entries split by the map that holds them, each group in input order.
fn grouped<'a>(
    items: impl Iterator<Item = (&'a Prefix, Option<&'a PolicyEntry>)>,
) -> Vec<(usize, Vec<Keyed<'a>>)> {
    let mut groups: [Vec<Keyed<'a>>; 4] = Default::default();
    for (p, e) in items {
        let (map, key) = key_of(p);
        groups[map].push((p, key, e));
    }
    groups
        .into_iter()
        .enumerate()
        .filter(|(_, g)| !g.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_the_map_layout() {
        let (m, k) = key_of(&"192.0.2.7".parse().unwrap());
        assert_eq!((m, k), (0, vec![192, 0, 2, 7]));
        let (m, k) = key_of(&"192.0.2.0/24".parse().unwrap());
        assert_eq!(m, 1);
        assert_eq!(k.len(), 8);
        assert_eq!(&k[..4], &24u32.to_ne_bytes());
        assert_eq!(&k[4..], &[192, 0, 2, 0]);
        let (m, k) = key_of(&"2001:db8::1".parse().unwrap());
        assert_eq!((m, k.len()), (2, 16));
        let (m, k) = key_of(&"2001:db8::/32".parse().unwrap());
        assert_eq!((m, k.len()), (3, 24));
        // Same bytes as the shared key types the single-entry calls use.
        let k4 = enforcer_common::PrefixKeyV4::new(24, [192, 0, 2, 0]);
        // SAFETY: PrefixKeyV4 is repr(C), 8 bytes, no padding.
        let b4: [u8; 8] = unsafe { std::mem::transmute(k4) };
        assert_eq!(b4.to_vec(), key_of(&"192.0.2.0/24".parse().unwrap()).1);
        let mut a6 = [0u8; 16];
        a6[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        let k6 = enforcer_common::PrefixKeyV6::new(32, a6);
        // SAFETY: PrefixKeyV6 is repr(C), 24 bytes, its padding an explicit field.
        let b6: [u8; 24] = unsafe { std::mem::transmute(k6) };
        assert_eq!(b6.to_vec(), k);
    }

    #[test]
    fn room_is_checked_per_map_after_removals() {
        let p = |s: &str| -> Prefix { s.parse().unwrap() };
        let have = [p("10.0.0.1"), p("10.0.0.2")];
        let present = |q: &Prefix| have.contains(q);
        let cap = [3, 1, 1, 1];
        // Two present, one new host: fits; two new: the second is refused.
        assert!(check_room([2, 0, 0, 0], present, &[p("10.0.0.3")], &[], cap).is_ok());
        let e = check_room(
            [2, 0, 0, 0],
            present,
            &[p("10.0.0.3"), p("10.0.0.4")],
            &[],
            cap,
        )
        .unwrap_err();
        assert_eq!((e.prefix, e.max), (p("10.0.0.4"), 3));
        // A replaced list frees its old entries first; re-adding a present one costs nothing.
        let adding = [p("10.0.0.1"), p("10.0.0.3"), p("10.0.0.4")];
        assert!(check_room([2, 0, 0, 0], present, &adding, &[p("10.0.0.2")], cap).is_ok());
        // Each map has its own capacity.
        assert!(check_room(
            [2, 0, 0, 0],
            present,
            &[p("10.0.0.0/8"), p("::/0")],
            &[],
            cap
        )
        .is_ok());
        assert!(check_room([2, 1, 0, 0], present, &[p("11.0.0.0/8")], &[], cap).is_err());
        assert_eq!(map_of(&p("2001:db8::1")), 2);
    }

    #[test]
    fn groups_keep_input_order_per_map() {
        let ps: Vec<Prefix> = ["10.0.0.1", "10.0.0.0/8", "10.0.0.2", "::1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let g = grouped(ps.iter().map(|p| (p, None)));
        let shape: Vec<(usize, Vec<String>)> = g
            .iter()
            .map(|(m, v)| (*m, v.iter().map(|(p, _, _)| p.to_string()).collect()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (0, vec!["10.0.0.1/32".into(), "10.0.0.2/32".into()]),
                (1, vec!["10.0.0.0/8".into()]),
                (2, vec!["::1/128".into()]),
            ]
        );
    }
}

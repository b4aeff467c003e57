//! Typed access to the pinned maps: the only code that names a map (always through the
//! `enforcer_common::maps` constants). Every open checks the pinned map's type and sizes against the
//! contract, so a map left by an incompatible build is reported instead of misread.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use aya::maps::{Array, HashMap, Map, MapData, MapError, MapType, PerCpuArray};
use enforcer_common::config::{
    CONFIG_FLAG_FIRST_SEEN, CONFIG_FLAG_NOTICE_FALLBACK_PASS, CONFIG_FLAG_REPORT_ONLY,
};
use enforcer_common::counters::{fold, IFINDEX_LIMIT, MAX_IFACE_SLOTS, STATS_SLOTS};
use enforcer_common::maps as names;
use enforcer_common::{GlobalConfig, PolicyEntry, PrefixKeyV4, PrefixKeyV6, RateKey, RateState};

use crate::net::Prefix;

/// Layout of a pin directory: `<pin-dir>/maps/<MAP>` and `<pin-dir>/links/<kind>_<iface>`.
#[derive(Clone, Debug)]
pub struct PinDir(PathBuf);

impl PinDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self(root.into())
    }
    pub fn root(&self) -> &Path {
        &self.0
    }
    pub fn maps(&self) -> PathBuf {
        self.0.join("maps")
    }
    pub fn map(&self, name: &str) -> PathBuf {
        self.maps().join(name)
    }
    pub fn links(&self) -> PathBuf {
        self.0.join("links")
    }
}

/// Why the pinned datapath could not be opened; each message says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "no enforcer datapath is pinned at {0}: run `enforcer run --iface IFACE` first (or pass the --pin-dir it used)"
    )]
    NotPinned(PathBuf),
    #[error(
        "permission denied opening {0}: enforcer needs root (CAP_BPF and CAP_NET_ADMIN); run it as root"
    )]
    Permission(PathBuf),
    #[error(
        "pinned map {path} is {found}, this enforcer expects {expected}: it was made by another version; run `enforcer detach` and start `enforcer run` again"
    )]
    Incompatible {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error(
        "{0} is not on a BPF filesystem: pass a --pin-dir under /sys/fs/bpf (mount it with `mount -t bpf bpf /sys/fs/bpf`)"
    )]
    NotBpffs(PathBuf),
    #[error("{iface} already has enforcer attached as {kind}; run `enforcer detach` first to change --mode")]
    ModeMismatch { iface: String, kind: &'static str },
}

/// A policy map has no room for another entry. The same error (and text) whichever path writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the kernel policy map for {prefix} is full ({max} entries); nothing was stored: remove entries first (`enforcer unset`, `enforcer forget`)")]
pub struct MapFull {
    pub prefix: Prefix,
    pub max: u32,
}

/// What the contract says a map looks like.
#[derive(Clone, Copy, Debug)]
pub struct MapSpec {
    pub name: &'static str,
    pub ty: MapType,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
}

const fn spec(name: &'static str, ty: MapType, k: usize, v: usize, max: u32) -> MapSpec {
    MapSpec {
        name,
        ty,
        key_size: k as u32,
        value_size: v as u32,
        max_entries: max,
    }
}

const ENTRY: usize = size_of::<PolicyEntry>();

/// Every map in the contract, in `ALL_MAPS` order.
pub const SPECS: [MapSpec; 17] = [
    spec(
        names::POLICY_V4_HOSTS,
        MapType::Hash,
        4,
        ENTRY,
        names::MAX_HOSTS_V4,
    ),
    spec(
        names::POLICY_V4_PREFIXES,
        MapType::Hash,
        size_of::<PrefixKeyV4>(),
        ENTRY,
        names::MAX_PREFIXES_V4,
    ),
    spec(
        names::POLICY_V6_HOSTS,
        MapType::Hash,
        16,
        ENTRY,
        names::MAX_HOSTS_V6,
    ),
    spec(
        names::POLICY_V6_PREFIXES,
        MapType::Hash,
        size_of::<PrefixKeyV6>(),
        ENTRY,
        names::MAX_PREFIXES_V6,
    ),
    spec(
        names::RATE_STATE,
        MapType::LruHash,
        size_of::<RateKey>(),
        size_of::<RateState>(),
        names::MAX_RATE_STATE,
    ),
    spec(names::PORTS, MapType::Array, 4, 4, names::PORT_COUNT),
    spec(
        names::CONFIG,
        MapType::Array,
        4,
        size_of::<GlobalConfig>(),
        1,
    ),
    spec(names::STATS, MapType::PerCpuArray, 4, 8, STATS_SLOTS),
    spec(names::IFACE_SLOTS, MapType::Array, 4, 4, IFINDEX_LIMIT),
    spec(
        names::PREFIX_FILTER_V4,
        MapType::Array,
        4,
        8,
        enforcer_common::filter::FILTER_WORDS,
    ),
    spec(
        names::PREFIX_FILTER_V6,
        MapType::Array,
        4,
        8,
        enforcer_common::filter::FILTER_WORDS,
    ),
    spec(
        names::FIRST_SEEN_EVENTS,
        MapType::RingBuf,
        0,
        0,
        enforcer_common::first_seen::RING_BYTES,
    ),
    spec(
        names::FIRST_SEEN,
        MapType::LruHash,
        size_of::<RateKey>(),
        4,
        enforcer_common::first_seen::MAX_SEEN,
    ),
    spec(
        names::FIRST_SEEN_STATE,
        MapType::PerCpuArray,
        4,
        size_of::<enforcer_common::first_seen::FirstSeenState>(),
        1,
    ),
    spec(
        names::NOTICE_SOCKETS,
        MapType::SockMap,
        4,
        4,
        names::NOTICE_SLOTS,
    ),
    spec(
        names::PREFIX_LENGTHS_V4,
        MapType::Array,
        4,
        8,
        enforcer_common::filter::LENGTH_WORDS_V4,
    ),
    spec(
        names::PREFIX_LENGTHS_V6,
        MapType::Array,
        4,
        16,
        enforcer_common::filter::LENGTH_SLOTS_V6,
    ),
];

fn spec_of(name: &str) -> &'static MapSpec {
    SPECS
        .iter()
        .find(|s| s.name == name)
        .expect("every map name has a spec")
}

/// The `io::Error` inside a map error, if any.
pub(crate) fn io_error_of(e: &MapError) -> Option<&io::Error> {
    match e {
        MapError::SyscallError(s) => Some(&s.io_error),
        MapError::PinError {
            error: aya::pin::PinError::SyscallError(s),
            ..
        } => Some(&s.io_error),
        _ => None,
    }
}

fn is_enoent(e: &MapError) -> bool {
    matches!(e, MapError::KeyNotFound | MapError::ElementNotFound)
        || io_error_of(e).is_some_and(|io| io.raw_os_error() == Some(libc::ENOENT))
}

/// Checks a map's kernel description against its spec. The size of a sizable map (`[capacity]`) is
/// whatever the daemon that created it was configured with: `capacity` = `Some` when the caller needs
/// one exact size (the daemon adopting pins), `None` to accept any valid one (every other reader).
pub(crate) fn check_spec(
    data: &MapData,
    path: &Path,
    spec: &MapSpec,
    capacity: Option<&super::Capacity>,
) -> anyhow::Result<()> {
    let info = data
        .info()
        .with_context(|| format!("reading map info of {}", path.display()))?;
    let ty = info.map_type().ok();
    let sizable = super::Capacity::default().of(spec.name).is_some();
    let want_max = match (capacity.and_then(|c| c.of(spec.name)), sizable) {
        (Some(m), _) => m,
        (None, true)
            if (super::capacity::MIN..=super::capacity::MAX).contains(&info.max_entries()) =>
        {
            info.max_entries()
        }
        (None, _) => spec.max_entries,
    };
    let found = (ty, info.key_size(), info.value_size(), info.max_entries());
    let expected = (Some(spec.ty), spec.key_size, spec.value_size, want_max);
    if sizable
        && found.0 == expected.0
        && found.1 == expected.1
        && found.2 == expected.2
        && found.3 != want_max
    {
        let key = super::Capacity::default()
            .entries()
            .into_iter()
            .find(|(_, n, _)| *n == spec.name)
            .map(|(k, _, _)| k)
            .unwrap_or("?");
        anyhow::bail!(
            "the pinned map {} holds up to {} entries but capacity.{key} is {want_max}: run `enforcer detach` first (entries come back from the store on the next `enforcer run`), or set capacity.{key} = {}",
            path.display(),
            found.3,
            found.3
        );
    }
    if found != expected {
        let show = |(t, k, v, m): (Option<MapType>, u32, u32, u32)| {
            format!("{t:?} key {k} B value {v} B max {m}")
        };
        return Err(OpenError::Incompatible {
            path: path.to_path_buf(),
            found: show(found),
            expected: show(expected),
        }
        .into());
    }
    Ok(())
}

/// Opens one pinned map after checking it against the contract.
fn open(pins: &PinDir, name: &str) -> anyhow::Result<Map> {
    let path = pins.map(name);
    let data = MapData::from_pin(&path).map_err(|e| {
        let io = io_error_of(&e);
        match io.map(|io| io.kind()) {
            Some(io::ErrorKind::NotFound) => {
                anyhow::Error::from(OpenError::NotPinned(pins.root().to_path_buf()))
            }
            Some(io::ErrorKind::PermissionDenied) => OpenError::Permission(path.clone()).into(),
            _ => anyhow::Error::from(e).context(format!("opening pinned map {}", path.display())),
        }
    })?;
    check_spec(&data, &path, spec_of(name), None)?;
    Map::from_map_data(data).with_context(|| format!("opening pinned map {}", path.display()))
}

type V4Hosts = HashMap<MapData, [u8; 4], PolicyEntry>;
type V6Hosts = HashMap<MapData, [u8; 16], PolicyEntry>;
type V4Prefixes = HashMap<MapData, PrefixKeyV4, PolicyEntry>;
type V6Prefixes = HashMap<MapData, PrefixKeyV6, PolicyEntry>;

/// The four policy maps: exact hosts in hash maps, shorter prefixes in hash maps keyed by (length,
/// masked address), each prefix map behind its presence filter and length masks. Every write to the kernel's policy goes through here, so the filters are
/// kept in step on every path (single writes, imports, unset, reconcile, self-check, fleet).
pub struct PolicyMaps {
    v4_hosts: V4Hosts,
    v4_prefixes: V4Prefixes,
    v6_hosts: V6Hosts,
    v6_prefixes: V6Prefixes,
    /// The same four maps as raw descriptors for batch writes.
    batch: super::batch::BatchMaps,
    /// Presence filters (with length masks) of the v4 and v6 prefix maps, and whether a prefix was removed since each was
    /// last recomputed (its bits may be stale: correct, only slower).
    filters: [super::filter::Filter; 2],
    stale: [bool; 2],
    /// For the size of a full map (`[capacity]` may differ from the default).
    pins: PinDir,
}

/// Where an entry lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Hosts,
    Prefixes,
}

impl PolicyMaps {
    pub fn open_pinned(pin_dir: &Path) -> anyhow::Result<Self> {
        let pins = PinDir::new(pin_dir);
        Ok(Self {
            v4_hosts: open(&pins, names::POLICY_V4_HOSTS)?.try_into()?,
            v4_prefixes: open(&pins, names::POLICY_V4_PREFIXES)?.try_into()?,
            v6_hosts: open(&pins, names::POLICY_V6_HOSTS)?.try_into()?,
            v6_prefixes: open(&pins, names::POLICY_V6_PREFIXES)?.try_into()?,
            batch: super::batch::BatchMaps::open(&pins)?,
            filters: [open_filter(&pins, true)?, open_filter(&pins, false)?],
            stale: [false; 2],
            pins,
        })
    }

    fn filter_of(&self, prefix: &Prefix) -> &super::filter::Filter {
        self.filter(prefix.is_ipv4())
    }

    /// The presence filter (and length masks) of the IPv4 (`v4`) or IPv6 prefix map.
    pub fn filter(&self, v4: bool) -> &super::filter::Filter {
        &self.filters[usize::from(!v4)]
    }

    /// Whether the kernel can find `prefix`'s entry: always for a host; for a shorter prefix when
    /// the presence filter and the length masks have its bits (the self-check rewrites the entry
    /// otherwise).
    pub fn filtered(&self, prefix: &Prefix) -> bool {
        prefix.is_host() || self.filter_of(prefix).covers(prefix)
    }

    /// Recomputes the presence filters and length masks of the families that lost a prefix since
    /// the last time, from what their prefix maps hold now: one walk of the map's keys. Called after bulk removals,
    /// by the engine after reconciling and on every self-check, and when the maps are closed.
    pub fn settle_filters(&mut self) -> anyhow::Result<()> {
        for (i, v4) in [(0, true), (1, false)] {
            if !self.stale[i] {
                continue;
            }
            let prefixes = self.prefixes_of(v4)?;
            self.filters[i].rebuild(&prefixes);
            self.stale[i] = false;
        }
        Ok(())
    }

    /// Recomputes both presence filters from the prefix maps (the daemon after reconciling at start:
    /// clears bits left by prefixes removed in earlier runs).
    pub fn rebuild_filters(&mut self) -> anyhow::Result<()> {
        self.stale = [true; 2];
        self.settle_filters()
    }

    /// Every prefix of one family's prefix map.
    fn prefixes_of(&self, v4: bool) -> anyhow::Result<Vec<Prefix>> {
        let mut out = Vec::new();
        if v4 {
            for k in self.v4_prefixes.keys() {
                let k = k?;
                out.push(Prefix::containing(IpAddr::from(k.addr), k.prefix_len as u8));
            }
        } else {
            for k in self.v6_prefixes.keys() {
                let k = k?;
                out.push(Prefix::containing(IpAddr::from(k.addr), k.prefix_len as u8));
            }
        }
        Ok(out)
    }

    /// Inserts or replaces many entries with batched syscalls (`enforcer import`).
    pub fn upsert_many(&mut self, entries: &[(Prefix, PolicyEntry)]) -> anyhow::Result<()> {
        // Bits first: the kernel must never hold a prefix its filter does not show.
        for f in &self.filters {
            f.add(entries.iter().filter(|(p, _)| !p.is_host()).map(|(p, _)| p));
        }
        self.batch.upsert(entries)
    }

    /// How many entries each policy map holds at most, in `batch::map_of` order.
    pub fn capacity(&self) -> anyhow::Result<[u32; 4]> {
        self.batch.capacity()
    }

    /// Removes the entries for exactly these prefixes with batched syscalls; returns how many
    /// existed.
    pub fn remove_many(&mut self, prefixes: &[Prefix]) -> anyhow::Result<usize> {
        for p in prefixes.iter().filter(|p| !p.is_host()) {
            self.stale[usize::from(!p.is_ipv4())] = true;
        }
        let removed = self.batch.remove(prefixes);
        // Even after a partial failure: whatever was removed is then no longer in the filter.
        let settled = self.settle_filters();
        let removed = removed?;
        settled?;
        Ok(removed)
    }

    /// Inserts or replaces the entry for exactly `prefix`.
    pub fn upsert(&mut self, prefix: &Prefix, entry: &PolicyEntry) -> anyhow::Result<()> {
        let len = u32::from(prefix.len());
        if !prefix.is_host() {
            self.filter_of(prefix).add([prefix]);
        }
        // A host entry holds its source's token bucket: rewriting the same bucket (reconcile at
        // start, a realign, a repair) keeps it instead of handing the source a fresh burst.
        let mut kept = *entry;
        let metered =
            entry.action == enforcer_common::policy::ACTION_RATE_LIMIT || entry.is_notice();
        if prefix.is_host() && metered && entry.tat_ns == 0 {
            if let Ok(Some(old)) = self.get(prefix) {
                if old.same_bucket(entry) {
                    kept.tat_ns = old.tat_ns;
                }
            }
        }
        let entry = &kept;
        let r = match (prefix.addr(), prefix.is_host()) {
            (IpAddr::V4(a), true) => self.v4_hosts.insert(a.octets(), entry, 0),
            (IpAddr::V4(a), false) => {
                self.v4_prefixes
                    .insert(PrefixKeyV4::new(len, a.octets()), entry, 0)
            }
            (IpAddr::V6(a), true) => self.v6_hosts.insert(a.octets(), entry, 0),
            (IpAddr::V6(a), false) => {
                self.v6_prefixes
                    .insert(PrefixKeyV6::new(len, a.octets()), entry, 0)
            }
        };
        r.map_err(|e| {
            let full = io_error_of(&e).is_some_and(|io| {
                io.raw_os_error() == Some(libc::E2BIG) || io.raw_os_error() == Some(libc::ENOSPC)
            });
            if full {
                let name = match (prefix.addr(), prefix.is_host()) {
                    (IpAddr::V4(_), true) => names::POLICY_V4_HOSTS,
                    (IpAddr::V4(_), false) => names::POLICY_V4_PREFIXES,
                    (IpAddr::V6(_), true) => names::POLICY_V6_HOSTS,
                    (IpAddr::V6(_), false) => names::POLICY_V6_PREFIXES,
                };
                let max = MapData::from_pin(self.pins.map(name))
                    .ok()
                    .and_then(|d| d.info().ok())
                    .map_or(spec_of(name).max_entries, |i| i.max_entries());
                MapFull {
                    prefix: *prefix,
                    max,
                }
                .into()
            } else {
                anyhow::Error::from(e).context(format!("writing the entry for {prefix}"))
            }
        })
    }

    /// Removes the entry for exactly `prefix`; false when there was none.
    pub fn remove(&mut self, prefix: &Prefix) -> anyhow::Result<bool> {
        let len = u32::from(prefix.len());
        let r = match (prefix.addr(), prefix.is_host()) {
            (IpAddr::V4(a), true) => self.v4_hosts.remove(&a.octets()),
            (IpAddr::V4(a), false) => self.v4_prefixes.remove(&PrefixKeyV4::new(len, a.octets())),
            (IpAddr::V6(a), true) => self.v6_hosts.remove(&a.octets()),
            (IpAddr::V6(a), false) => self.v6_prefixes.remove(&PrefixKeyV6::new(len, a.octets())),
        };
        match r {
            Ok(()) => {
                if !prefix.is_host() {
                    self.stale[usize::from(!prefix.is_ipv4())] = true;
                }
                Ok(true)
            }
            Err(e) if is_enoent(&e) => Ok(false),
            Err(e) => {
                Err(anyhow::Error::from(e).context(format!("removing the entry for {prefix}")))
            }
        }
    }

    /// The entry for exactly `prefix`, if any: one exact lookup (the prefix maps are hashes keyed
    /// by length and masked address).
    pub fn get(&self, prefix: &Prefix) -> anyhow::Result<Option<PolicyEntry>> {
        let len = u32::from(prefix.len());
        let r = match (prefix.addr(), prefix.is_host()) {
            (IpAddr::V4(a), true) => self.v4_hosts.get(&a.octets(), 0),
            (IpAddr::V4(a), false) => self.v4_prefixes.get(&PrefixKeyV4::new(len, a.octets()), 0),
            (IpAddr::V6(a), true) => self.v6_hosts.get(&a.octets(), 0),
            (IpAddr::V6(a), false) => self.v6_prefixes.get(&PrefixKeyV6::new(len, a.octets()), 0),
        };
        match r {
            Ok(e) => Ok(Some(e)),
            Err(e) if is_enoent(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The entries for exactly these prefixes, one lookup each.
    pub fn get_many(&self, prefixes: &[Prefix]) -> anyhow::Result<Vec<Option<PolicyEntry>>> {
        prefixes.iter().map(|p| self.get(p)).collect()
    }

    /// Every prefix that has an entry (keys only: a listing then reads entries a batch at a time).
    pub fn prefixes(&self) -> anyhow::Result<Vec<Prefix>> {
        let mut out = Vec::new();
        for k in self.v4_hosts.keys() {
            out.push(Prefix::host(IpAddr::from(k?)));
        }
        for k in self.v6_hosts.keys() {
            out.push(Prefix::host(IpAddr::from(k?)));
        }
        for k in self.v4_prefixes.keys() {
            let k = k?;
            out.push(Prefix::containing(IpAddr::from(k.addr), k.prefix_len as u8));
        }
        for k in self.v6_prefixes.keys() {
            let k = k?;
            out.push(Prefix::containing(IpAddr::from(k.addr), k.prefix_len as u8));
        }
        Ok(out)
    }

    /// Every entry, hosts and prefixes of both families, sorted by prefix.
    pub fn entries(&self) -> anyhow::Result<Vec<(Prefix, PolicyEntry)>> {
        let mut out = Vec::new();
        for r in self.v4_hosts.iter() {
            let (k, v) = r?;
            out.push((Prefix::host(IpAddr::from(k)), v));
        }
        for r in self.v6_hosts.iter() {
            let (k, v) = r?;
            out.push((Prefix::host(IpAddr::from(k)), v));
        }
        for r in self.v4_prefixes.iter() {
            let (k, v) = r?;
            out.push((
                Prefix::containing(IpAddr::from(k.addr), k.prefix_len as u8),
                v,
            ));
        }
        for r in self.v6_prefixes.iter() {
            let (k, v) = r?;
            out.push((
                Prefix::containing(IpAddr::from(k.addr), k.prefix_len as u8),
                v,
            ));
        }
        out.sort_by_key(|a| a.0);
        Ok(out)
    }

    /// The entries the kernel would consult for `ip`, most specific first: the host entry (if any)
    /// then every prefix containing it by decreasing length.
    pub fn candidates(&self, ip: IpAddr) -> anyhow::Result<Vec<(Prefix, Table, PolicyEntry)>> {
        let mut out = Vec::new();
        let host = Prefix::host(ip);
        let hit = match ip {
            IpAddr::V4(a) => self.v4_hosts.get(&a.octets(), 0),
            IpAddr::V6(a) => self.v6_hosts.get(&a.octets(), 0),
        };
        match hit {
            Ok(e) => out.push((host, Table::Hosts, e)),
            Err(e) if is_enoent(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let mut prefixes: Vec<_> = self
            .entries()?
            .into_iter()
            .filter(|(p, _)| !p.is_host() && p.contains(ip))
            .collect();
        prefixes.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        out.extend(prefixes.into_iter().map(|(p, e)| (p, Table::Prefixes, e)));
        Ok(out)
    }
}

impl Drop for PolicyMaps {
    fn drop(&mut self) {
        if let Err(e) = self.settle_filters() {
            log::warn!("recomputing the prefix presence filters: {e:#} (stale bits only cost a trie walk; the next removal or self-check retries)");
        }
    }
}

/// Opens and maps one family's presence filter and length masks.
fn open_filter(pins: &PinDir, v4: bool) -> anyhow::Result<super::filter::Filter> {
    use std::os::fd::AsFd as _;
    let (bits, lengths) = if v4 {
        (names::PREFIX_FILTER_V4, names::PREFIX_LENGTHS_V4)
    } else {
        (names::PREFIX_FILTER_V6, names::PREFIX_LENGTHS_V6)
    };
    let (bits_map, lengths_map) = (open(pins, bits)?, open(pins, lengths)?);
    let (Map::Array(b), Map::Array(l)) = (&bits_map, &lengths_map) else {
        anyhow::bail!("pinned maps {bits} and {lengths} must be arrays");
    };
    super::filter::Filter::map(b.fd().as_fd(), l.fd().as_fd(), v4).with_context(|| {
        format!(
            "mapping {} and {} (they must be mmapable: made by this version)",
            pins.map(bits).display(),
            pins.map(lengths).display()
        )
    })
}

/// Protected ports and global settings.
pub struct ControlMaps {
    ports: Array<MapData, u32>,
    config: Array<MapData, GlobalConfig>,
}

impl ControlMaps {
    pub fn open_pinned(pin_dir: &Path) -> anyhow::Result<Self> {
        let pins = PinDir::new(pin_dir);
        Ok(Self {
            ports: open(&pins, names::PORTS)?.try_into()?,
            config: open(&pins, names::CONFIG)?.try_into()?,
        })
    }

    /// Protected ports, ascending.
    pub fn ports(&self) -> anyhow::Result<Vec<u16>> {
        let mut out = Vec::new();
        for (i, v) in self.ports.iter().enumerate() {
            if v? != 0 {
                out.push(i as u16);
            }
        }
        Ok(out)
    }

    /// Makes exactly `ports` protected: new ports are added before old ones are removed, so a port in
    /// both sets is never unprotected in between.
    pub fn set_ports(&mut self, ports: &[u16]) -> anyhow::Result<()> {
        for p in ports {
            self.ports.set(u32::from(*p), 1, 0)?;
        }
        for old in self.ports()? {
            if !ports.contains(&old) {
                self.ports.set(u32::from(old), 0, 0)?;
            }
        }
        Ok(())
    }

    pub fn report_only(&self) -> anyhow::Result<bool> {
        Ok(self.config.get(&0, 0)?.flags & CONFIG_FLAG_REPORT_ONLY != 0)
    }

    pub fn set_report_only(&mut self, on: bool) -> anyhow::Result<()> {
        self.set_flag(CONFIG_FLAG_REPORT_ONLY, on)
    }

    /// Whether the datapath reports first-seen sources (while the greeting probe runs).
    pub fn first_seen(&self) -> anyhow::Result<bool> {
        Ok(self.config.get(&0, 0)?.flags & CONFIG_FLAG_FIRST_SEEN != 0)
    }

    pub fn set_first_seen(&mut self, on: bool) -> anyhow::Result<()> {
        self.set_flag(CONFIG_FLAG_FIRST_SEEN, on)
    }

    fn set_flag(&mut self, flag: u32, on: bool) -> anyhow::Result<()> {
        let mut c = self.config.get(&0, 0)?;
        if on {
            c.flags |= flag;
        } else {
            c.flags &= !flag;
        }
        self.config.set(0, c, 0)?;
        Ok(())
    }
}

/// The first-seen event ring and its per-CPU counters (`enforcer_common::first_seen`).
pub struct FirstSeenMaps {
    pub events: aya::maps::RingBuf<MapData>,
    pub state: FirstSeenState,
}

type FirstSeenState = PerCpuArray<MapData, enforcer_common::first_seen::FirstSeenState>;

/// The kernel's first-seen counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FirstSeenCounts {
    pub sent: u64,
    pub lost: u64,
    pub over_budget: u64,
}

impl FirstSeenMaps {
    pub fn open_pinned(pin_dir: &Path) -> anyhow::Result<Self> {
        let pins = PinDir::new(pin_dir);
        Ok(Self {
            events: open(&pins, names::FIRST_SEEN_EVENTS)?.try_into()?,
            state: open(&pins, names::FIRST_SEEN_STATE)?.try_into()?,
        })
    }

    pub fn counts_of(state: &FirstSeenState) -> anyhow::Result<FirstSeenCounts> {
        let mut out = FirstSeenCounts::default();
        for s in state.get(&0, 0)?.iter() {
            out.sent += s.sent;
            out.lost += s.lost;
            out.over_budget += s.over_budget;
        }
        Ok(out)
    }
}

impl ControlMaps {
    /// `notice.fallback`: whether a SYN the `sk_lookup` program would steer goes to the MTA (`true`)
    /// or is dropped while no responder socket is registered.
    pub fn set_notice_fallback_pass(&mut self, pass: bool) -> anyhow::Result<()> {
        self.set_flag(CONFIG_FLAG_NOTICE_FALLBACK_PASS, pass)
    }
}

/// The notice responder's listening sockets, one slot per address family.
pub struct NoticeSockets(aya::maps::SockMap<MapData>);

impl NoticeSockets {
    pub fn open_pinned(pin_dir: &Path) -> anyhow::Result<Self> {
        Ok(Self(
            open(&PinDir::new(pin_dir), names::NOTICE_SOCKETS)?.try_into()?,
        ))
    }

    /// Puts a listening TCP socket in `slot` (`NOTICE_SLOT_V4` or `NOTICE_SLOT_V6`), replacing the
    /// socket of an earlier daemon if it is still there.
    pub fn register(
        &mut self,
        slot: u32,
        socket: &impl std::os::fd::AsRawFd,
    ) -> anyhow::Result<()> {
        self.0
            .set(slot, socket, 0)
            .with_context(|| format!("registering the notice responder socket in slot {slot}"))
    }
}

/// Per-source rate-limiter state (read-only from userspace: `explain` shows whether a SYN would pass).
pub struct RateMap(HashMap<MapData, RateKey, RateState>);

impl RateMap {
    pub fn open_pinned(pin_dir: &Path) -> anyhow::Result<Self> {
        Ok(Self(
            open(&PinDir::new(pin_dir), names::RATE_STATE)?.try_into()?,
        ))
    }

    pub fn get(&self, ip: IpAddr) -> anyhow::Result<Option<RateState>> {
        let key = match ip {
            IpAddr::V4(a) => RateKey::v4(a.octets()),
            IpAddr::V6(a) => RateKey::v6(a.octets()),
        };
        match self.0.get(&key, 0) {
            Ok(s) => Ok(Some(s)),
            Err(e) if is_enoent(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Forgets a source's bucket (used when its entry changes so the new rate starts full).
    pub fn forget_prefix(&mut self, prefix: &Prefix) -> anyhow::Result<()> {
        let keys: Vec<RateKey> = self.0.keys().filter_map(Result::ok).collect();
        for k in keys {
            let ip = rate_key_ip(&k);
            if prefix.contains(ip) {
                let _ = self.0.remove(&k);
            }
        }
        Ok(())
    }
}

fn rate_key_ip(k: &RateKey) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(k.addr);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// The per-CPU counters.
pub struct StatsMap(PerCpuArray<MapData, u64>);

impl StatsMap {
    pub fn open_pinned(pin_dir: &Path) -> anyhow::Result<Self> {
        Ok(Self(open(&PinDir::new(pin_dir), names::STATS)?.try_into()?))
    }

    /// Every entry summed over CPUs, indexed by `counters::stats_index` (per interface slot and
    /// address family).
    pub fn read_all(&self) -> anyhow::Result<Vec<u64>> {
        let mut out = Vec::with_capacity(STATS_SLOTS as usize);
        for i in 0..STATS_SLOTS {
            let per_cpu = self.0.get(&i, 0)?;
            out.push(per_cpu.iter().fold(0u64, |a, v| a.wrapping_add(*v)));
        }
        Ok(out)
    }

    /// Every reason slot summed over CPUs, interfaces and families, in slot order.
    pub fn sums(&self) -> anyhow::Result<Vec<u64>> {
        Ok(fold(&self.read_all()?).to_vec())
    }

    /// Zeroes an interface slot's counters before it is given to another interface, so a new
    /// interface label never starts from an old interface's counts.
    pub fn reset_iface(&mut self, slot: u32) -> anyhow::Result<()> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        let per_iface = STATS_SLOTS / MAX_IFACE_SLOTS;
        for i in slot * per_iface..(slot + 1) * per_iface {
            let zeros = aya::maps::PerCpuValues::try_from(vec![0u64; cpus])?;
            self.0.set(i, zeros, 0)?;
        }
        Ok(())
    }
}

/// Which interfaces count in which `STATS` slot (`IFACE_SLOTS`, indexed by ifindex).
pub struct IfaceSlots(Array<MapData, u32>);

impl IfaceSlots {
    pub fn open_pinned(pin_dir: &Path) -> anyhow::Result<Self> {
        Ok(Self(
            open(&PinDir::new(pin_dir), names::IFACE_SLOTS)?.try_into()?,
        ))
    }

    /// The slot of an ifindex (0 = none).
    pub fn get(&self, ifindex: u32) -> anyhow::Result<u32> {
        if ifindex >= IFINDEX_LIMIT {
            return Ok(0);
        }
        Ok(self.0.get(&ifindex, 0)?)
    }

    /// Interfaces of this network namespace that have a slot: `(slot, name)`, by slot.
    pub fn assigned(&self) -> anyhow::Result<Vec<(u32, String)>> {
        let mut out = Vec::new();
        for (ifindex, name) in super::sys::interfaces() {
            let slot = self.get(ifindex)?;
            if slot != 0 && slot < MAX_IFACE_SLOTS {
                out.push((slot, name));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The slot `iface` should count in: the one it has, else the lowest free one. Returns the slot
    /// and whether it is new (its counters must be reset before [`IfaceSlots::set`]); slot 0 when
    /// every slot is taken (the interface is then counted as `interface="other"`) or its ifindex is
    /// beyond the array.
    pub fn choose(&self, iface: &str, ifindex: u32) -> anyhow::Result<(u32, bool)> {
        if ifindex >= IFINDEX_LIMIT {
            return Ok((0, false));
        }
        let current = self.get(ifindex)?;
        let taken = self.assigned()?;
        // A slot is only this interface's if no other live interface claims it too (an ifindex
        // reused after its interface was deleted may still hold the old slot).
        if current != 0
            && current < MAX_IFACE_SLOTS
            && taken.iter().filter(|(s, _)| *s == current).count() == 1
        {
            return Ok((current, false));
        }
        let free = (1..MAX_IFACE_SLOTS).find(|s| !taken.iter().any(|(t, n)| t == s && n != iface));
        Ok(free.map_or((0, false), |s| (s, true)))
    }

    pub fn set(&mut self, ifindex: u32, slot: u32) -> anyhow::Result<()> {
        if ifindex < IFINDEX_LIMIT {
            self.0.set(ifindex, slot, 0)?;
        }
        Ok(())
    }
}

/// Entries and capacity of every map that fills up (the hashes; arrays are always full).
pub fn fill_levels(pin_dir: &Path) -> anyhow::Result<Vec<(&'static str, u64, u32)>> {
    let pins = PinDir::new(pin_dir);
    let mut out = Vec::new();
    let count = |keys: &mut dyn Iterator<Item = Result<(), MapError>>| -> anyhow::Result<u64> {
        let mut n = 0u64;
        for k in keys {
            k?;
            n += 1;
        }
        Ok(n)
    };
    let v4h: V4Hosts = open(&pins, names::POLICY_V4_HOSTS)?.try_into()?;
    out.push((
        names::POLICY_V4_HOSTS,
        count(&mut v4h.keys().map(|k| k.map(drop)))?,
    ));
    let v4p: V4Prefixes = open(&pins, names::POLICY_V4_PREFIXES)?.try_into()?;
    out.push((
        names::POLICY_V4_PREFIXES,
        count(&mut v4p.keys().map(|k| k.map(drop)))?,
    ));
    let v6h: V6Hosts = open(&pins, names::POLICY_V6_HOSTS)?.try_into()?;
    out.push((
        names::POLICY_V6_HOSTS,
        count(&mut v6h.keys().map(|k| k.map(drop)))?,
    ));
    let v6p: V6Prefixes = open(&pins, names::POLICY_V6_PREFIXES)?.try_into()?;
    out.push((
        names::POLICY_V6_PREFIXES,
        count(&mut v6p.keys().map(|k| k.map(drop)))?,
    ));
    let rate: HashMap<MapData, RateKey, RateState> = open(&pins, names::RATE_STATE)?.try_into()?;
    out.push((
        names::RATE_STATE,
        count(&mut rate.keys().map(|k| k.map(drop)))?,
    ));
    Ok(out
        .into_iter()
        .map(|(name, n)| (name, n, spec_of(name).max_entries))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_cover_every_map_in_order() {
        let names: Vec<_> = SPECS.iter().map(|s| s.name).collect();
        assert_eq!(names, names::ALL_MAPS);
    }

    #[test]
    fn rate_keys_map_back() {
        let ip: IpAddr = "10.200.0.2".parse().unwrap();
        assert_eq!(rate_key_ip(&RateKey::v4([10, 200, 0, 2])), ip);
        let ip6: IpAddr = "fd00:200::2".parse().unwrap();
        let IpAddr::V6(a) = ip6 else { unreachable!() };
        assert_eq!(rate_key_ip(&RateKey::v6(a.octets())), ip6);
    }

    #[test]
    fn pin_layout() {
        let p = PinDir::new("/sys/fs/bpf/enforcer");
        assert_eq!(
            p.map(names::STATS),
            PathBuf::from("/sys/fs/bpf/enforcer/maps/STATS")
        );
        assert_eq!(p.links(), PathBuf::from("/sys/fs/bpf/enforcer/links"));
    }
}

//! Loading, attaching, pinning, adopting and detaching the datapath.
//!
//! Maps are pinned under `<pin-dir>/maps/` and links under `<pin-dir>/links/<kind>_<iface>`, so
//! enforcement outlives the daemon. A restarted daemon loads the new programs against the SAME pinned
//! maps (aya reuses a map whose pin exists) and swaps its program into each existing link atomically
//! (`bpf_link_update`): no gap, no lost entry, never attached twice.

use std::io;
use std::path::Path;

use anyhow::{bail, Context as _};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::{self, NlOptions, TcAttachOptions};
use aya::programs::{LinkOrder, SchedClassifier, SkLookup, TcAttachType, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use enforcer_common::maps as names;
use log::{info, warn};

use super::maps::{check_spec, io_error_of, IfaceSlots, PinDir, StatsMap, SPECS};
use super::sys;

/// What the operator asked for with `--mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Native XDP, then generic XDP, then TC.
    Auto,
    /// Native (driver) XDP only.
    Xdp,
    /// Generic (skb) XDP only.
    XdpSkb,
    /// TC ingress only (tcx where the kernel has it, clsact otherwise).
    Tc,
}

/// How a program is attached to one interface; the prefix of its pin name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    XdpDrv,
    XdpSkb,
    Tcx,
    Clsact,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::XdpDrv, Kind::XdpSkb, Kind::Tcx, Kind::Clsact];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::XdpDrv => "xdp",
            Kind::XdpSkb => "xdp-skb",
            Kind::Tcx => "tcx",
            Kind::Clsact => "clsact",
        }
    }

    fn fits(self, mode: Mode) -> bool {
        match mode {
            Mode::Auto => true,
            Mode::Xdp => self == Kind::XdpDrv,
            Mode::XdpSkb => self == Kind::XdpSkb,
            Mode::Tc => matches!(self, Kind::Tcx | Kind::Clsact),
        }
    }

    /// Pin file name: `<kind>_<iface>`, with `.` and `%` in the interface name percent-encoded
    /// because bpffs refuses names containing a dot (EPERM).
    pub fn pin_name(self, iface: &str) -> String {
        let enc = iface.replace('%', "%25").replace('.', "%2E");
        format!("{}_{enc}", self.as_str())
    }

    /// Splits a pin file name back into kind and interface.
    pub fn parse_pin_name(name: &str) -> Option<(Kind, String)> {
        Kind::ALL.into_iter().find_map(|k| {
            let enc = name.strip_prefix(k.as_str())?.strip_prefix('_')?;
            let iface = enc.replace("%2E", ".").replace("%25", "%");
            (!iface.is_empty()).then_some((k, iface))
        })
    }
}

/// The result of attaching to one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    pub iface: String,
    pub kind: Kind,
    /// An existing pinned attachment was taken over (its program replaced atomically).
    pub adopted: bool,
}

/// A pinned attachment found under `<pin-dir>/links/`.
#[derive(Clone, Debug)]
pub struct PinnedAttachment {
    pub iface: String,
    pub kind: Kind,
    pub path: std::path::PathBuf,
    /// Still attached to the interface of that name (false once it was deleted or recreated).
    pub live: bool,
}

/// Every attachment pinned under `pins`.
pub fn pinned_attachments(pins: &PinDir) -> anyhow::Result<Vec<PinnedAttachment>> {
    let dir = pins.links();
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent?;
        let name = ent.file_name();
        let Some((kind, iface)) = name.to_str().and_then(Kind::parse_pin_name) else {
            continue;
        };
        let iface = iface.as_str();
        let path = ent.path();
        let live = match kind {
            Kind::XdpDrv | Kind::XdpSkb | Kind::Tcx => {
                let want = if kind == Kind::Tcx {
                    sys::LINK_TYPE_TCX
                } else {
                    sys::LINK_TYPE_XDP
                };
                match sys::obj_get(&path).and_then(|fd| sys::link_info(&fd)) {
                    Ok(i) => i.link_type == want && Some(i.ifindex) == sys::ifindex(iface),
                    Err(_) => false,
                }
            }
            // A netlink filter has no link object; the program pin marks it while the interface lives.
            Kind::Clsact => sys::ifindex(iface).is_some(),
        };
        out.push(PinnedAttachment {
            iface: iface.to_string(),
            kind,
            path,
            live,
        });
    }
    out.sort_by(|a, b| a.iface.cmp(&b.iface));
    Ok(out)
}

/// The loaded object, its maps pinned (new or adopted) under the pin directory.
pub struct Datapath {
    ebpf: Ebpf,
    pins: PinDir,
    /// The maps were pinned before this load (a live or stopped datapath), not created by it.
    adopted: bool,
    /// aya-log level written into the object (0 = off).
    log_level: u8,
}

impl Datapath {
    /// Loads the embedded object with the default map sizes, reusing every map already pinned under
    /// `pin_dir`.
    pub fn load(pin_dir: &Path) -> anyhow::Result<Self> {
        Self::load_with(pin_dir, &super::Capacity::default())
    }

    /// Loads the embedded object with maps of `capacity`, reusing every map already pinned under
    /// `pin_dir` (which must have that capacity: a changed size needs `enforcer detach` first).
    pub fn load_with(pin_dir: &Path, capacity: &super::Capacity) -> anyhow::Result<Self> {
        let pins = PinDir::new(pin_dir);
        if pin_dir.starts_with(sys::BPFFS_ROOT) {
            match sys::ensure_bpffs_root() {
                Ok(true) => info!("mounted a BPF filesystem at {}", sys::BPFFS_ROOT),
                Ok(false) => {}
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    return Err(super::OpenError::Permission(pin_dir.to_path_buf()).into())
                }
                Err(e) => warn!(
                    "could not mount a BPF filesystem at {}: {e}",
                    sys::BPFFS_ROOT
                ),
            }
        }
        // Refuse before creating anything: a pin directory off bpffs must not get maps/ and links/.
        let existing = pin_dir
            .ancestors()
            .find(|a| a.exists())
            .unwrap_or(Path::new("/"));
        if !sys::is_bpffs(existing).unwrap_or(false) {
            return Err(super::OpenError::NotBpffs(pin_dir.to_path_buf()).into());
        }
        for d in [pins.maps(), pins.links()] {
            std::fs::create_dir_all(&d).map_err(|e| {
                if e.kind() == io::ErrorKind::PermissionDenied {
                    anyhow::Error::from(super::OpenError::Permission(d.clone()))
                } else {
                    anyhow::Error::from(e).context(format!(
                        "creating {} (is bpffs mounted? `mount -t bpf bpf /sys/fs/bpf`)",
                        d.display()
                    ))
                }
            })?;
        }
        if !sys::is_bpffs(pin_dir).unwrap_or(false) {
            return Err(super::OpenError::NotBpffs(pin_dir.to_path_buf()).into());
        }
        // Check maps left by an earlier run before the loader silently reuses them.
        let mut adopted = 0;
        for spec in &SPECS {
            let path = pins.map(spec.name);
            match aya::maps::MapData::from_pin(&path) {
                Ok(data) => {
                    check_spec(&data, &path, spec, Some(capacity))?;
                    adopted += 1;
                }
                Err(e)
                    if io_error_of(&e).is_some_and(|io| io.kind() == io::ErrorKind::NotFound) => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("opening pinned map {}", path.display()))
                }
            }
        }
        let mut loader = EbpfLoader::new();
        for (_, name, max) in capacity.entries() {
            loader.map_max_entries(name, max);
        }
        let log_level = super::kernel_log::level_from_env();
        loader.override_global(aya_log::LEVEL, &log_level, false);
        let paths: Vec<_> = names::ALL_MAPS.iter().map(|n| (*n, pins.map(n))).collect();
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        let ebpf = loader.load(crate::EBPF_OBJECT).map_err(|e| {
            let perm = matches!(&e, aya::EbpfError::MapError(m) if io_error_of(m).is_some_and(|io| io.kind() == io::ErrorKind::PermissionDenied))
                || e.to_string().contains("Operation not permitted");
            if perm {
                anyhow::Error::from(super::OpenError::Permission(pin_dir.to_path_buf()))
            } else {
                anyhow::Error::from(e).context("loading the eBPF object")
            }
        })?;
        if adopted > 0 {
            info!(
                "adopted {adopted} pinned maps under {} (entries kept)",
                pins.maps().display()
            );
        } else {
            info!("created and pinned maps under {}", pins.maps().display());
        }
        Ok(Self {
            ebpf,
            pins,
            adopted: adopted > 0,
            log_level,
        })
    }

    pub fn pins(&self) -> &PinDir {
        &self.pins
    }

    /// The reader of the kernel's log records, when a kernel log level is set (`None` when off).
    pub fn kernel_logger(&mut self) -> Option<aya_log::EbpfLogger<&'static dyn log::Log>> {
        if self.log_level == 0 {
            return None;
        }
        match aya_log::EbpfLogger::init(&mut self.ebpf) {
            Ok(l) => Some(l),
            Err(e) => {
                warn!("kernel log records unavailable: {e}");
                None
            }
        }
    }

    /// True when the maps existed before this load; false when it created (and pinned) them.
    pub fn adopted(&self) -> bool {
        self.adopted
    }

    /// Fails, as [`Datapath::attach`] would, when `iface` has a live attachment that does not fit
    /// `mode`. Checked for every interface before anything is written.
    pub fn check_mode(&self, iface: &str, mode: Mode) -> anyhow::Result<()> {
        for a in pinned_attachments(&self.pins)? {
            if a.iface == iface && a.live && !a.kind.fits(mode) {
                return Err(super::OpenError::ModeMismatch {
                    iface: iface.to_string(),
                    kind: a.kind.as_str(),
                }
                .into());
            }
        }
        Ok(())
    }

    fn xdp(&mut self) -> anyhow::Result<&mut Xdp> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(names::PROG_XDP)
            .with_context(|| format!("the eBPF object has no program {}", names::PROG_XDP))?
            .try_into()?;
        if prog.fd().is_err() {
            prog.load().context("loading the XDP program")?;
        }
        Ok(prog)
    }

    fn tc(&mut self) -> anyhow::Result<&mut SchedClassifier> {
        let prog: &mut SchedClassifier = self
            .ebpf
            .program_mut(names::PROG_TC)
            .with_context(|| format!("the eBPF object has no program {}", names::PROG_TC))?
            .try_into()?;
        if prog.fd().is_err() {
            prog.load().context("loading the TC program")?;
        }
        Ok(prog)
    }

    /// Gives `iface` its own slot of per-interface counters (before the program runs on it, so
    /// every packet is counted under its name). Failing here only costs the per-interface split.
    fn count_iface(&self, iface: &str) {
        let Some(ifindex) = sys::ifindex(iface) else {
            return;
        };
        let root = self.pins.root();
        let assign = || -> anyhow::Result<u32> {
            let mut slots = IfaceSlots::open_pinned(root)?;
            let (slot, fresh) = slots.choose(iface, ifindex)?;
            if fresh {
                StatsMap::open_pinned(root)?.reset_iface(slot)?;
            }
            slots.set(ifindex, slot)?;
            Ok(slot)
        };
        match assign() {
            Ok(0) => warn!(
                "{iface}: every per-interface counter slot is taken; its packets are counted as interface=\"other\""
            ),
            Ok(_) => {}
            Err(e) => warn!("{iface}: per-interface counters unavailable: {e:#}"),
        }
    }

    /// Attaches to `iface`, adopting a live pinned attachment when there is one that fits `mode`.
    pub fn attach(&mut self, iface: &str, mode: Mode) -> anyhow::Result<Attached> {
        self.count_iface(iface);
        let existing: Vec<_> = pinned_attachments(&self.pins)?
            .into_iter()
            .filter(|a| a.iface == iface)
            .collect();
        let mut live = None;
        for a in existing {
            if a.live && live.is_none() {
                live = Some(a);
            } else {
                info!(
                    "removing stale pin {} (its interface was deleted or recreated)",
                    a.path.display()
                );
                let _ = std::fs::remove_file(&a.path);
            }
        }
        if let Some(a) = live {
            if !a.kind.fits(mode) {
                return Err(super::OpenError::ModeMismatch {
                    iface: iface.to_string(),
                    kind: a.kind.as_str(),
                }
                .into());
            }
            self.adopt(&a)?;
            if a.kind == Kind::XdpDrv && is_veth(iface) {
                warn!("{}", veth_warning(iface));
            }
            info!(
                "{iface}: adopted the pinned {} attachment, program replaced atomically",
                a.kind.as_str()
            );
            return Ok(Attached {
                iface: iface.to_string(),
                kind: a.kind,
                adopted: true,
            });
        }
        let veth = is_veth(iface);
        let order: &[Kind] = match mode {
            // On a veth, native XDP's XDP_TX only reaches a peer that runs an XDP program itself, so
            // reject entries would answer nobody: auto picks a mode in which every action works.
            Mode::Auto if veth => &[Kind::XdpSkb, Kind::Tcx, Kind::Clsact],
            Mode::Auto => &[Kind::XdpDrv, Kind::XdpSkb, Kind::Tcx, Kind::Clsact],
            Mode::Xdp => &[Kind::XdpDrv],
            Mode::XdpSkb => &[Kind::XdpSkb],
            Mode::Tc => &[Kind::Tcx, Kind::Clsact],
        };
        let mut errors = Vec::new();
        for &kind in order {
            match self.attach_new(iface, kind) {
                Ok(()) => {
                    if kind == Kind::XdpDrv && veth {
                        warn!("{}", veth_warning(iface));
                    }
                    if errors.is_empty() {
                        info!("{iface}: attached as {}", kind.as_str());
                    } else {
                        info!(
                            "{iface}: attached as {} ({})",
                            kind.as_str(),
                            errors.join("; ")
                        );
                    }
                    return Ok(Attached {
                        iface: iface.to_string(),
                        kind,
                        adopted: false,
                    });
                }
                Err(e) => errors.push(format!("{} failed: {e:#}", kind.as_str())),
            }
        }
        bail!(
            "could not attach to {iface}: {} (another XDP program on the interface? remove it with `ip link set dev {iface} xdp off`, or try another --mode)",
            errors.join("; ")
        )
    }

    fn adopt(&mut self, a: &PinnedAttachment) -> anyhow::Result<()> {
        match a.kind {
            Kind::XdpDrv | Kind::XdpSkb => {
                let link: FdLink = PinnedLink::from_pin(&a.path)?.into();
                let prog = self.xdp()?;
                let id = prog.attach_to_link(link.try_into()?)?;
                // The pin keeps the link; dropping our fd must not detach it.
                drop(FdLink::try_from(prog.take_link(id)?)?);
            }
            Kind::Tcx => {
                let link: FdLink = PinnedLink::from_pin(&a.path)?.into();
                let prog = self.tc()?;
                let id = prog.attach_to_link(link.try_into()?)?;
                drop(FdLink::try_from(prog.take_link(id)?)?);
            }
            Kind::Clsact => {
                // Netlink filters cannot be swapped atomically and a second filter would run the
                // rate limiter twice: replace it (a gap of one netlink round trip; only kernels
                // without tcx, < 6.6, get here).
                match tc::qdisc_detach_program(&a.iface, TcAttachType::Ingress, names::PROG_TC) {
                    Ok(()) => {}
                    Err(tc::TcError::IoError(e)) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e).context("removing the old TC filter"),
                }
                let _ = std::fs::remove_file(&a.path);
                self.attach_clsact(&a.iface, &a.path)?;
            }
        }
        Ok(())
    }

    fn attach_new(&mut self, iface: &str, kind: Kind) -> anyhow::Result<()> {
        let path = self.pins.links().join(kind.pin_name(iface));
        match kind {
            Kind::XdpDrv | Kind::XdpSkb => {
                let mode = if kind == Kind::XdpDrv {
                    XdpMode::Driver
                } else {
                    XdpMode::Skb
                };
                let prog = self.xdp()?;
                let id = prog.attach(iface, mode)?;
                let link = prog.take_link(id)?;
                let fd = FdLink::try_from(link).context(
                    "the kernel attached XDP through netlink (no bpf_link), which cannot be pinned",
                )?;
                fd.pin(&path)
                    .with_context(|| format!("pinning {}", path.display()))?;
            }
            Kind::Tcx => {
                let prog = self.tc()?;
                let id = prog.attach_with_options(
                    iface,
                    TcAttachType::Ingress,
                    TcAttachOptions::TcxOrder(LinkOrder::default()),
                )?;
                let fd = FdLink::try_from(prog.take_link(id)?)?;
                fd.pin(&path)
                    .with_context(|| format!("pinning {}", path.display()))?;
            }
            Kind::Clsact => self.attach_clsact(iface, &path)?,
        }
        Ok(())
    }

    fn attach_clsact(&mut self, iface: &str, path: &Path) -> anyhow::Result<()> {
        if let Err(e) = tc::qdisc_add_clsact(iface) {
            // EEXIST: the qdisc is already there, which is fine.
            let exists =
                matches!(&e, tc::TcError::NetlinkError(n) if n.to_string().contains("exists"));
            if !exists {
                warn!("{iface}: adding the clsact qdisc: {e}");
            }
        }
        let prog = self.tc()?;
        let id = prog.attach_with_options(
            iface,
            TcAttachType::Ingress,
            TcAttachOptions::Netlink(NlOptions::default()),
        )?;
        // A netlink filter stays until removed; forgetting the link keeps aya from removing it.
        std::mem::forget(prog.take_link(id)?);
        if !path.exists() {
            prog.pin(path)
                .with_context(|| format!("pinning {}", path.display()))?;
        }
        Ok(())
    }
}

/// Pin of the notice responder's `sk_lookup` link, under `<pin-dir>/links/` (no interface: it is
/// attached to a network namespace).
pub const SK_LOOKUP_PIN: &str = "sk_lookup";

impl Datapath {
    /// Attaches the `sk_lookup` program to the network namespace at `netns` (a `/proc/PID/ns/net` or
    /// `/run/netns/NAME` file) and pins the link, replacing the link of an earlier run: the new link
    /// is attached before the old pin goes, so steering never stops in between.
    pub fn attach_sk_lookup(&mut self, netns: &Path) -> anyhow::Result<()> {
        let ns = std::fs::File::open(netns).with_context(|| {
            format!(
                "opening the network namespace {} (notice.netns: /proc/PID/ns/net or a name under /run/netns)",
                netns.display()
            )
        })?;
        let prog: &mut SkLookup = self
            .ebpf
            .program_mut(names::PROG_SK_LOOKUP)
            .with_context(|| format!("the eBPF object has no program {}", names::PROG_SK_LOOKUP))?
            .try_into()?;
        if prog.fd().is_err() {
            prog.load().context("loading the sk_lookup program")?;
        }
        let id = prog.attach(&ns).with_context(|| {
            format!(
                "attaching the sk_lookup program to {} (needs kernel >= 5.9)",
                netns.display()
            )
        })?;
        let link = FdLink::from(prog.take_link(id)?);
        let path = self.pins.links().join(SK_LOOKUP_PIN);
        match std::fs::remove_file(&path) {
            Ok(()) => info!("replaced the notice responder's sk_lookup link of an earlier run"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
        link.pin(&path)
            .with_context(|| format!("pinning {}", path.display()))?;
        Ok(())
    }
}

/// Removes the notice responder's `sk_lookup` link (the responder is off); true if there was one.
pub fn detach_sk_lookup(pins: &PinDir) -> anyhow::Result<bool> {
    let path = pins.links().join(SK_LOOKUP_PIN);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

fn is_veth(iface: &str) -> bool {
    sys::driver_name(iface).as_deref() == Some("veth")
}

fn veth_warning(iface: &str) -> String {
    format!(
        "{iface} is a veth with native XDP: the RST of reject entries (XDP_TX) only reaches the peer if the peer runs an XDP program; otherwise rejected SYNs are effectively dropped. Use --mode xdp-skb or --mode tc (after `enforcer detach`)"
    )
}

/// Interfaces where a reject's RST is not delivered: native XDP on a veth (see [`veth_warning`]).
pub fn rst_undelivered(pins: &PinDir) -> Vec<String> {
    pinned_attachments(pins)
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.live && a.kind == Kind::XdpDrv && is_veth(&a.iface))
        .map(|a| a.iface)
        .collect()
}

/// What `detach` removed.
#[derive(Debug, Default)]
pub struct DetachReport {
    pub detached: Vec<(String, Kind)>,
    /// The notice responder's `sk_lookup` link was removed.
    pub sk_lookup: bool,
    pub maps_removed: usize,
}

/// Removes every attachment pinned under `pin_dir`, then the map pins and the directories.
pub fn detach(pin_dir: &Path) -> anyhow::Result<DetachReport> {
    let pins = PinDir::new(pin_dir);
    let mut report = DetachReport::default();
    for a in pinned_attachments(&pins)? {
        match a.kind {
            Kind::XdpDrv | Kind::XdpSkb | Kind::Tcx => {
                // Removing the last reference (the pin) detaches the link.
                std::fs::remove_file(&a.path)
                    .with_context(|| format!("removing {}", a.path.display()))?;
            }
            Kind::Clsact => {
                if a.live {
                    match tc::qdisc_detach_program(&a.iface, TcAttachType::Ingress, names::PROG_TC)
                    {
                        Ok(()) => {}
                        Err(tc::TcError::IoError(e)) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(e)
                                .with_context(|| format!("removing the TC filter on {}", a.iface))
                        }
                    }
                }
                std::fs::remove_file(&a.path)
                    .with_context(|| format!("removing {}", a.path.display()))?;
            }
        }
        report.detached.push((a.iface, a.kind));
    }
    report.sk_lookup = detach_sk_lookup(&pins)?;
    for name in names::ALL_MAPS {
        let p = pins.map(name);
        match std::fs::remove_file(&p) {
            Ok(()) => report.maps_removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
        }
    }
    for d in [pins.links(), pins.maps(), pins.root().to_path_buf()] {
        match std::fs::remove_dir(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn!("leaving {}: {e}", d.display()),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_names_round_trip() {
        for kind in Kind::ALL {
            for iface in ["eth0", "eth0.100", "veth-a.b", "x%2E_y"] {
                let n = kind.pin_name(iface);
                assert!(!n.contains('.'), "{n}");
                assert_eq!(Kind::parse_pin_name(&n), Some((kind, iface.to_string())));
            }
        }
        assert_eq!(Kind::parse_pin_name("bogus_eth0"), None);
        assert_eq!(Kind::parse_pin_name("xdp_"), None);
        assert_eq!(Kind::parse_pin_name("xdp"), None);
        assert_eq!(
            Kind::parse_pin_name("xdp-skb_eth0"),
            Some((Kind::XdpSkb, "eth0".to_string()))
        );
    }

    #[test]
    fn modes_accept_kinds() {
        assert!(Kind::XdpSkb.fits(Mode::Auto));
        assert!(!Kind::XdpSkb.fits(Mode::Xdp));
        assert!(Kind::Clsact.fits(Mode::Tc));
        assert!(!Kind::Tcx.fits(Mode::XdpSkb));
    }
}

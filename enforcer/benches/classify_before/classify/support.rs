//! Support status of an on-premises Exchange build as of a date: the rule Exchange Online applies to
//! "persistently vulnerable" servers, made precise against the catalog.
//!
//! For a build `B` of version `V` in servicing line `L` (a CU for 2013 and later, a service pack before),
//! evaluated on date `D`:
//!
//! 1. **end-of-life** when `D` is after `V`'s end of support (the operator's override for `V` if one
//!    is set, e.g. paid Extended Security Updates; else the catalog's date; else the built-in date for
//!    versions the catalog leaves blank). The end date itself is still supported.
//! 2. **outdated** when `L` is no longer serviced on `D`: `L` is not one of the two newest lines of `V`
//!    released by `D`; or `L` is the older of those two and received no security release on or after
//!    the second-latest security-update date of `V` (so a CU left behind when the product moved on
//!    ages out exactly like an unpatched build).
//! 3. **outdated** when `B` is older than the second-latest security release of `L` released by `D`.
//!    Security releases are the line's base (RTM/CU/SP: it contains every earlier fix) and its
//!    security updates (`…SU`, `+ KB…`, update rollups); hotfix updates (`…HU`) and previews are not.
//!    A build between two releases (a hotfix update, an unlisted build) has the level of the release
//!    below it.
//! 4. otherwise **supported**.
//!
//! Builds the catalog does not list: inside a known line they are placed by number; above every build
//! the catalog knows for `V` they are taken as current (the catalog is older than the server) and the
//! finding says so; in an unknown line below the serviced ones they are outdated; otherwise unknown.
//! Persistently vulnerable = end-of-life or outdated.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::Date;

use super::build::Build;
use super::catalog::{Catalog, ExVersion, Kind, Line, Release};
use super::Status;

/// Operator overrides of end of support per Exchange version, e.g. `{"2016": "2026-10-13"}` for a
/// paid Extended Security Update period. Keys: `2013`, `exchange-2016`, `Exchange Server 2019`, `SE`…
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, String>",
    into = "BTreeMap<String, String>"
)]
pub struct SupportOverrides {
    end_of_support: BTreeMap<ExVersion, Date>,
}

impl SupportOverrides {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the end of support of `version` (an id as above) to `date`.
    pub fn set(&mut self, version: &str, date: Date) -> Result<(), String> {
        let v = ExVersion::from_id(version).ok_or_else(|| {
            format!("unknown Exchange version {version:?} in support overrides: use one of 4.0, 5.0, 5.5, 2000, 2003, 2007, 2010, 2013, 2016, 2019, SE")
        })?;
        self.end_of_support.insert(v, date);
        Ok(())
    }

    /// Parses `VERSION=YYYY-MM-DD` (the form of a command-line option).
    pub fn set_from_str(&mut self, spec: &str) -> Result<(), String> {
        let (v, d) = spec.split_once('=').ok_or_else(|| {
            format!("support override {spec:?} is not VERSION=YYYY-MM-DD (e.g. 2016=2026-10-13)")
        })?;
        let date = parse_iso(d)
            .ok_or_else(|| format!("support override {spec:?}: {d:?} is not a date YYYY-MM-DD"))?;
        self.set(v, date)
    }

    pub fn get(&self, v: ExVersion) -> Option<Date> {
        self.end_of_support.get(&v).copied()
    }
}

impl TryFrom<BTreeMap<String, String>> for SupportOverrides {
    type Error = String;
    fn try_from(m: BTreeMap<String, String>) -> Result<Self, String> {
        let mut o = SupportOverrides::new();
        for (k, v) in m {
            let d = parse_iso(&v).ok_or_else(|| {
                format!("support override for {k:?}: {v:?} is not a date YYYY-MM-DD")
            })?;
            o.set(&k, d)?;
        }
        Ok(o)
    }
}

impl From<SupportOverrides> for BTreeMap<String, String> {
    fn from(o: SupportOverrides) -> Self {
        o.end_of_support
            .into_iter()
            .map(|(v, d)| (v.id().to_string(), d.to_string()))
            .collect()
    }
}

/// Strict `YYYY-MM-DD`.
pub fn parse_iso(s: &str) -> Option<Date> {
    let s = s.trim();
    (s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-')
        .then(|| super::catalog::parse_date(s))?
}

/// The outcome of [`assess`]: status, the catalog row if the build is listed, and why.
#[derive(Clone, Debug)]
pub struct Assessment {
    pub status: Status,
    pub label: Option<String>,
    pub finding: String,
    pub upgrade_to: Option<String>,
}

/// End of support of `v` and whether it came from an override.
pub fn end_of_support(v: ExVersion, ov: &SupportOverrides) -> Option<(Date, bool)> {
    match ov.get(v) {
        Some(d) => Some((d, true)),
        None => Catalog::get().end_of_support(v).map(|d| (d, false)),
    }
}

pub fn is_end_of_life(v: ExVersion, as_of: Date, ov: &SupportOverrides) -> bool {
    end_of_support(v, ov).is_some_and(|(d, _)| as_of > d)
}

fn eol_finding(v: ExVersion, as_of: Date, ov: &SupportOverrides) -> Option<String> {
    let (d, overridden) = end_of_support(v, ov)?;
    (as_of > d).then(|| {
        let how = if overridden {
            " (operator override)"
        } else {
            ""
        };
        format!(
            "{} reached end of support on {d}{how}; as of {as_of} it gets no security updates",
            v.name()
        )
    })
}

/// Lines of `v` released by `as_of` (some non-preview row dated on or before it), newest first.
fn released_lines(v: ExVersion, as_of: Date) -> Vec<Line> {
    let mut lines: Vec<Line> = Catalog::get()
        .of_version(v)
        .iter()
        .filter(|r| r.kind != Kind::Preview && r.released_by(as_of))
        .map(|r| Line::of(r.build))
        .collect();
    lines.sort();
    lines.dedup();
    lines.reverse();
    lines
}

/// The dates of the two most recent security updates of `v` released by `as_of`, newest first.
fn security_rounds(v: ExVersion, as_of: Date) -> Vec<Date> {
    let mut dates: Vec<Date> = Catalog::get()
        .of_version(v)
        .iter()
        .filter(|r| r.kind == Kind::Security)
        .filter_map(|r| r.released.filter(|d| *d <= as_of))
        .collect();
    dates.sort_unstable();
    dates.dedup();
    dates.into_iter().rev().take(2).collect()
}

fn security_releases(v: ExVersion, line: Line, as_of: Date) -> Vec<&'static Release> {
    Catalog::get()
        .of_line(v, line)
        .iter()
        .filter(|r| matches!(r.kind, Kind::Base | Kind::Security) && r.released_by(as_of))
        .collect()
}

fn line_name(v: ExVersion, line: Line) -> String {
    let base = Catalog::get()
        .of_line(v, line)
        .iter()
        .find(|r| r.kind == Kind::Base)
        .or_else(|| Catalog::get().of_line(v, line).iter().next());
    match base {
        Some(r) => format!("{} ({}.{}.{})", r.label, line.major, line.minor, line.cu),
        None => format!(
            "{} line {}.{}.{}",
            v.name(),
            line.major,
            line.minor,
            line.cu
        ),
    }
}

/// Newest release (any kind but preview) of `line` by `as_of`.
fn latest_in_line(v: ExVersion, line: Line, as_of: Date) -> Option<&'static Release> {
    Catalog::get()
        .of_line(v, line)
        .iter()
        .filter(|r| r.kind != Kind::Preview && r.released_by(as_of))
        .max_by_key(|r| r.build)
}

/// What a server of version `v` (line `line` if known) should move to, as of `as_of`: the newest release
/// of its own line if that line is still serviced, of the newest line if the version is supported, and
/// of the newest supported version otherwise.
pub fn upgrade_target(
    v: Option<ExVersion>,
    line: Option<Line>,
    line_serviced: bool,
    as_of: Date,
    ov: &SupportOverrides,
) -> Option<String> {
    if let Some(v) = v.filter(|v| !is_end_of_life(*v, as_of, ov)) {
        if let Some(l) = line.filter(|_| line_serviced) {
            if let Some(r) = latest_in_line(v, l, as_of) {
                return Some(r.describe());
            }
        }
        if let Some(newest) = released_lines(v, as_of).first() {
            return latest_in_line(v, *newest, as_of).map(Release::describe);
        }
    }
    // The newest version still supported on `as_of` that had a release by then.
    let target = ExVersion::ALL
        .into_iter()
        .rev()
        .filter(|x| !is_end_of_life(*x, as_of, ov))
        .find_map(|x| {
            let newest = *released_lines(x, as_of).first()?;
            latest_in_line(x, newest, as_of)
        });
    match target {
        Some(r) => Some(r.describe()),
        None => Some("a supported Exchange Server version".to_string()),
    }
}

/// Applies the rule above to one build. Results are memoised per thread (a daemon sees the same few
/// builds all day); the memo is keyed by build, date and the overrides, and bounded.
pub fn assess(build: Build, as_of: Date, ov: &SupportOverrides) -> Assessment {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::hash::{Hash, Hasher};
    thread_local! {
        static MEMO: RefCell<HashMap<(Build, Date, u64), Assessment>> = RefCell::new(HashMap::new());
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ov.end_of_support.hash(&mut h);
    let key = (build, as_of, h.finish());
    if let Some(a) = MEMO.with(|m| m.borrow().get(&key).cloned()) {
        return a;
    }
    let a = assess_uncached(build, as_of, ov);
    MEMO.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= 1024 {
            m.clear();
        }
        m.insert(key, a.clone());
    });
    a
}

fn assess_uncached(build: Build, as_of: Date, ov: &SupportOverrides) -> Assessment {
    let cat = Catalog::get();
    let exact = cat.find(build);
    let label = exact.map(|r| r.label.to_string());
    let Some(v) = ExVersion::of_build(build) else {
        return Assessment {
            status: Status::Unknown,
            label,
            finding: format!("{build} is not an on-premises Exchange build number"),
            upgrade_to: None,
        };
    };
    let line = Line::of(build);
    let listed = match exact {
        Some(r) => format!("{build} is {}", r.label),
        None => format!("{build} ({})", v.name()),
    };
    if let Some(f) = eol_finding(v, as_of, ov) {
        return Assessment {
            status: Status::EndOfLife,
            label,
            finding: format!("{listed}: {f}"),
            upgrade_to: upgrade_target(Some(v), Some(line), false, as_of, ov),
        };
    }
    let lines = released_lines(v, as_of);
    let known_line = cat.of_line(v, line).iter().next().is_some();
    let outdated = |finding: String, serviced: bool| Assessment {
        status: Status::Outdated,
        label: label.clone(),
        finding: format!("{listed}: {finding}"),
        upgrade_to: upgrade_target(Some(v), Some(line), serviced, as_of, ov),
    };
    if !known_line {
        let newest_known = cat.of_version(v).iter().map(|r| r.build).max();
        if newest_known.is_some_and(|n| build > n) {
            return Assessment {
                status: Status::Supported,
                label,
                finding: format!("{listed}: newer than every {} build in the catalog (latest listed {}); the catalog predates this server, so it is taken as current", v.name(), newest_known.map(|b| b.to_string()).unwrap_or_default()),
                upgrade_to: None,
            };
        }
        if let Some(n2) = lines.get(1).filter(|n2| line < **n2) {
            return outdated(format!("not a build the catalog lists, in an update line older than the two serviced ones ({} and {})", line_name(v, lines[0]), line_name(v, *n2)), false);
        }
        return Assessment {
            status: Status::Unknown,
            label,
            finding: format!(
                "{listed}: not in the catalog and not placeable in a known update line"
            ),
            upgrade_to: None,
        };
    }
    if !lines.contains(&line) {
        let newer = lines.iter().any(|l| *l > line);
        if newer {
            // The line exists but had no dated release by `as_of`: an undated release in an old line.
            return outdated(
                format!("{} is no longer serviced on {as_of}", line_name(v, line)),
                false,
            );
        }
        return Assessment {
            status: Status::Unknown,
            label,
            finding: format!("{listed}: not yet released on {as_of}"),
            upgrade_to: None,
        };
    }
    let pos = lines.iter().position(|l| *l == line).unwrap_or(usize::MAX);
    if pos >= 2 {
        return outdated(format!("{} is no longer serviced on {as_of}: security updates ship only for the two newest update lines, {} and {}", line_name(v, line), line_name(v, lines[0]), line_name(v, lines[1])), false);
    }
    let sec = security_releases(v, line, as_of);
    if pos == 1 {
        let rounds = security_rounds(v, as_of);
        if let Some(cutoff) = rounds.get(1) {
            let last = sec.iter().filter_map(|r| r.released).max();
            if last.is_none_or(|d| d < *cutoff) {
                return outdated(format!("{} is no longer serviced on {as_of}: it received none of the two latest {} security updates (released {} and {})", line_name(v, line), v.name(), rounds[0], cutoff), false);
            }
        }
    }
    let mut sorted = sec.clone();
    sorted.sort_by_key(|r| r.build);
    let Some(latest) = sorted.last() else {
        return Assessment {
            status: Status::Unknown,
            label,
            finding: format!("{listed}: no release of its line is dated by {as_of}"),
            upgrade_to: None,
        };
    };
    let second = if sorted.len() >= 2 {
        sorted[sorted.len() - 2]
    } else {
        latest
    };
    let placement = if exact.is_none() {
        let below = cat
            .of_line(v, line)
            .iter()
            .filter(|r| r.build < build)
            .max_by_key(|r| r.build);
        let above = cat
            .of_line(v, line)
            .iter()
            .filter(|r| r.build > build)
            .min_by_key(|r| r.build);
        match (below, above) {
            (_, None) => {
                " (not in the catalog; newer than every listed build of its line)".to_string()
            }
            (Some(b), Some(a)) => format!(
                " (not in the catalog; between {} and {})",
                b.describe(),
                a.describe()
            ),
            (None, Some(a)) => format!(" (not in the catalog; older than {})", a.describe()),
        }
    } else {
        String::new()
    };
    if build >= second.build {
        let which = if build >= latest.build {
            "the latest"
        } else {
            "the second-latest"
        };
        Assessment {
            status: Status::Supported,
            label,
            finding: format!("{listed}{placement}: on {which} security update of its line as of {as_of} (latest: {})", latest.describe()),
            upgrade_to: None,
        }
    } else {
        outdated(
            format!("{placement}older than the two latest security updates of its line as of {as_of}: {} and {}", latest.describe(), second.describe()).trim_start_matches(' ').to_string(),
            true,
        )
    }
}

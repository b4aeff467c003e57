//! The Exchange Server build catalog (`enforcer/data/exchange-builds.csv`, sources in
//! `exchange-builds.SOURCES.md`), compiled into the binary and parsed once into a table sorted by build.

use std::sync::OnceLock;

use time::{Date, Month};

use super::build::Build;

static CSV: &str = include_str!("../../../data/exchange-builds.csv");

/// An on-premises Exchange Server version (a lifecycle product).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExVersion {
    V4_0,
    V5_0,
    V5_5,
    V2000,
    V2003,
    V2007,
    V2010,
    V2013,
    V2016,
    V2019,
    Se,
}

impl ExVersion {
    pub const ALL: [ExVersion; 11] = [
        ExVersion::V4_0,
        ExVersion::V5_0,
        ExVersion::V5_5,
        ExVersion::V2000,
        ExVersion::V2003,
        ExVersion::V2007,
        ExVersion::V2010,
        ExVersion::V2013,
        ExVersion::V2016,
        ExVersion::V2019,
        ExVersion::Se,
    ];

    /// The short id used in output and in overrides: `4.0` … `2019`, `SE`.
    pub fn id(self) -> &'static str {
        match self {
            ExVersion::V4_0 => "4.0",
            ExVersion::V5_0 => "5.0",
            ExVersion::V5_5 => "5.5",
            ExVersion::V2000 => "2000",
            ExVersion::V2003 => "2003",
            ExVersion::V2007 => "2007",
            ExVersion::V2010 => "2010",
            ExVersion::V2013 => "2013",
            ExVersion::V2016 => "2016",
            ExVersion::V2019 => "2019",
            ExVersion::Se => "SE",
        }
    }

    pub fn name(self) -> String {
        format!("Exchange Server {}", self.id())
    }

    /// Reads `2016`, `exchange-2016`, `Exchange Server 2016`, `se`, `exchange-se` (case-insensitive).
    pub fn from_id(s: &str) -> Option<Self> {
        let l = s.trim().to_ascii_lowercase();
        let l = l
            .strip_prefix("exchange server ")
            .or_else(|| l.strip_prefix("exchange-"))
            .or_else(|| l.strip_prefix("exchange "))
            .unwrap_or(&l);
        ExVersion::ALL
            .into_iter()
            .find(|v| v.id().eq_ignore_ascii_case(l))
    }

    /// The version a build number belongs to. 15.2 builds from 2562 on are Exchange Server SE (the rule
    /// Microsoft's CSS-Exchange scripts use). 15.20 and later are Exchange Online and give `None`.
    pub fn of_build(b: Build) -> Option<Self> {
        Some(match (b.major(), b.minor()) {
            (4, 0) => ExVersion::V4_0,
            (5, 0) => ExVersion::V5_0,
            (5, 5) => ExVersion::V5_5,
            (6, 0) => ExVersion::V2000,
            (6, 5) => ExVersion::V2003,
            (8, _) => ExVersion::V2007,
            (14, _) => ExVersion::V2010,
            (15, 0) => ExVersion::V2013,
            (15, 1) => ExVersion::V2016,
            (15, 2) if b.part(2) >= 2562 => ExVersion::Se,
            (15, 2) => ExVersion::V2019,
            _ => return None,
        })
    }

    fn from_catalog(product: &str) -> Option<Self> {
        let p = product.trim();
        let v = match () {
            _ if p.ends_with("4.0") => ExVersion::V4_0,
            _ if p.ends_with("5.0") => ExVersion::V5_0,
            _ if p.ends_with("5.5") => ExVersion::V5_5,
            _ if p.contains("2000") => ExVersion::V2000,
            _ if p.contains("2003") => ExVersion::V2003,
            _ if p.contains("2007") => ExVersion::V2007,
            _ if p.contains("2010") => ExVersion::V2010,
            _ if p.contains("2013") => ExVersion::V2013,
            _ if p.contains("2016") => ExVersion::V2016,
            _ if p.contains("2019") => ExVersion::V2019,
            _ if p.ends_with("SE") => ExVersion::Se,
            _ => return None,
        };
        Some(v)
    }

    /// End of support for versions the catalog leaves blank, from Microsoft's lifecycle announcements:
    /// 5.5 extended support ended 2005-12-31 (4.0 and 5.0 predate the lifecycle policy and were retired no
    /// later), 2000 extended support ended 2011-01-11. SE follows the Modern Lifecycle: no fixed end.
    fn builtin_end_of_support(self) -> Option<Date> {
        match self {
            ExVersion::V4_0 | ExVersion::V5_0 | ExVersion::V5_5 => {
                Date::from_calendar_date(2005, Month::December, 31).ok()
            }
            ExVersion::V2000 => Date::from_calendar_date(2011, Month::January, 11).ok(),
            _ => None,
        }
    }
}

/// What a catalog row is, read from its label; decides what counts as a security update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// RTM, a cumulative update or a service pack: the base of a servicing line.
    Base,
    /// A security update on top of a base (`Mar23SU`, `+ KB5019758`, an Update Rollup, `Post SP2`).
    Security,
    /// A non-security hotfix update (`Apr24HU`): no new security level.
    Hotfix,
    Preview,
}

impl Kind {
    fn of_label(label: &str) -> Kind {
        let b = label.as_bytes();
        let after_digit = |tag: &[u8]| {
            b.windows(tag.len() + 1)
                .any(|w| w[0].is_ascii_digit() && &w[1..] == tag)
        };
        if label.contains("Preview") {
            Kind::Preview
        } else if after_digit(b"HU") {
            Kind::Hotfix
        } else if after_digit(b"SU")
            || label.contains("+ KB")
            || label.contains("Update Rollup")
            || label.contains(" RU")
            || label.to_ascii_lowercase().contains("post")
        {
            Kind::Security
        } else {
            Kind::Base
        }
    }
}

/// One catalog row.
#[derive(Clone, Debug)]
pub struct Release {
    pub version: ExVersion,
    pub label: &'static str,
    pub build: Build,
    /// Release date; rows the source dates by month only count from the last day of that month, rows
    /// without a date (some pre-2021 security updates) never count as "released by" a date.
    pub released: Option<Date>,
    pub end_of_support: Option<Date>,
    pub kind: Kind,
}

impl Release {
    /// `15.1.2507.39 (Exchange Server 2016 CU23 Apr24HU)`.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.build, self.label)
    }

    pub fn released_by(&self, d: Date) -> bool {
        self.released.is_some_and(|r| r <= d)
    }
}

/// The servicing line a build belongs to: for Exchange 2013 and later the CU (`15.1.2507`); for older
/// versions the service pack (`14.3`), whose update rollups are its security updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Line {
    pub major: u32,
    pub minor: u32,
    pub cu: u32,
}

impl Line {
    pub fn of(b: Build) -> Line {
        let cu = if b.major() >= 15 { b.part(2) } else { 0 };
        Line {
            major: b.major(),
            minor: b.minor(),
            cu,
        }
    }
}

pub struct Catalog {
    /// Sorted by build; each version's rows, and within it each line's rows, are contiguous.
    pub releases: Vec<Release>,
    /// Per version (indexed by `ExVersion as usize`): its rows' index range.
    by_version: [(usize, usize); ExVersion::ALL.len()],
}

impl Catalog {
    pub fn get() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| Catalog::parse(CSV))
    }

    /// Rows that do not parse are skipped; a unit test proves every shipped row parses.
    fn parse(csv: &'static str) -> Catalog {
        let mut rows: Vec<(Release, bool)> = csv.lines().skip(1).filter_map(parse_row).collect();
        // The source lists a few builds twice (`8.2.305.3` and zero-padded `8.2.305.03`): keep the row
        // dated to the day.
        rows.sort_by_key(|(r, day)| (r.build, !day));
        rows.dedup_by_key(|(r, _)| r.build);
        let releases: Vec<Release> = rows.into_iter().map(|(r, _)| r).collect();
        let mut by_version = [(0, 0); ExVersion::ALL.len()];
        for (i, v) in ExVersion::ALL.into_iter().enumerate() {
            // Versions follow build order (SE starts at 15.2.2562), so each is one run.
            let start = releases.iter().position(|r| r.version == v).unwrap_or(0);
            let len = releases[start..]
                .iter()
                .take_while(|r| r.version == v)
                .count();
            by_version[i] = (start, start + len);
        }
        Catalog {
            releases,
            by_version,
        }
    }

    pub fn exact(&self, b: Build) -> Option<&Release> {
        let i = self.releases.binary_search_by(|r| r.build.cmp(&b)).ok()?;
        Some(&self.releases[i])
    }

    /// Exact match; else a catalog row that lists only the first three parts (`5.5.2653` for
    /// `5.5.2653.13`, `6.5.7226` for `6.5.7226.0`: the old builds are catalogued without revision).
    pub fn find(&self, b: Build) -> Option<&Release> {
        self.exact(b).or_else(|| {
            let short =
                Build::parse(format!("{}.{}.{}", b.major(), b.minor(), b.part(2)).as_bytes())?;
            (b.len() == 4).then(|| self.exact(short))?
        })
    }

    /// The rows of one version, sorted by build.
    pub fn of_version(&self, v: ExVersion) -> &[Release] {
        let (a, b) = self.by_version[v as usize];
        &self.releases[a..b]
    }

    /// The rows of one servicing line of `v`, sorted by build.
    pub fn of_line(&self, v: ExVersion, line: Line) -> &[Release] {
        let rows = self.of_version(v);
        let a = rows.partition_point(|r| Line::of(r.build) < line);
        let n = rows[a..]
            .iter()
            .take_while(|r| Line::of(r.build) == line)
            .count();
        &rows[a..a + n]
    }

    /// The catalog's end of support for a version (blank in the CSV for the oldest ones and for SE).
    pub fn end_of_support(&self, v: ExVersion) -> Option<Date> {
        self.of_version(v)
            .iter()
            .find_map(|r| r.end_of_support)
            .or(v.builtin_end_of_support())
    }
}

/// A row and whether its release date is given to the day.
fn parse_row(line: &'static str) -> Option<(Release, bool)> {
    let mut cols = line.split(',');
    let product = cols.next()?;
    let label = cols.next()?.trim();
    let build = Build::parse(cols.next()?.trim().as_bytes())?;
    let released_text = cols.next().unwrap_or_default();
    let released = parse_date(released_text);
    let end_of_support = cols.next().and_then(parse_date);
    let version = ExVersion::from_catalog(product)?;
    let release = Release {
        version,
        label,
        build,
        released,
        end_of_support,
        kind: Kind::of_label(label),
    };
    Some((release, released_text.trim().len() == 10))
}

/// `YYYY-MM-DD`, or `YYYY-MM` read as the last day of the month: when the source only knows the month,
/// a release counts from the end of it, so a server is never called outdated before the update that
/// superseded it can have shipped.
pub fn parse_date(s: &str) -> Option<Date> {
    let s = s.trim();
    let mut it = s.split('-');
    let y: i32 = it.next()?.parse().ok()?;
    let m: u8 = it.next()?.parse().ok()?;
    let month = Month::try_from(m).ok()?;
    let d: u8 = match it.next() {
        Some(d) => d.parse().ok()?,
        None => month.length(y),
    };
    if it.next().is_some() || !(1000..=9999).contains(&y) {
        return None;
    }
    Date::from_calendar_date(y, month, d).ok()
}

//! An operator's build catalog (`classifier.catalog = "/etc/enforcer/exchange-builds.csv"`,
//! `enforcer catalog check FILE`): the built-in CSV format, read strictly. Microsoft ships security
//! updates every few months; an operator adds their rows without waiting for a rebuild.
//!
//! Unlike the built-in file (proved by tests), every row is checked and the first problems are reported
//! as `file:line: what is wrong and how to fix it`.

use std::path::Path;

use super::build::Build;
use super::catalog::{parse_date, parse_row, Catalog, ExVersion, Kind, Release};

/// The first line of a catalog file (the built-in `enforcer/data/exchange-builds.csv` has it too).
pub const HEADER: &str = "product,version_label,build,release_date,end_of_support";

/// A file larger than this is not a build catalog (the built-in one is ~40 KiB).
const MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Problems reported at most (the rest are counted).
const MAX_PROBLEMS: usize = 20;

/// Why a catalog file was refused: each problem names the file and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.problems, *.more))]
pub struct CatalogFileError {
    pub problems: Vec<String>,
    /// Problems beyond the ones listed.
    pub more: usize,
}

fn render(problems: &[String], more: usize) -> String {
    let mut s = problems.join("\n");
    if more > 0 {
        s.push_str(&format!("\n… and {more} more problems"));
    }
    s
}

/// What a valid catalog file holds.
#[derive(Debug)]
pub struct CatalogFile {
    pub rows: Vec<Release>,
    /// Rows whose build the built-in catalog lists too (the file's row replaces it).
    pub replacing: usize,
}

/// Reads and validates `path`. Labels are kept for the life of the process (a catalog is loaded once).
pub fn load(path: &Path) -> Result<CatalogFile, CatalogFileError> {
    let name = path.display().to_string();
    let one = |m: String| CatalogFileError {
        problems: vec![m],
        more: 0,
    };
    let meta = std::fs::metadata(path)
        .map_err(|e| one(format!("{name}: cannot read the catalog file: {e}")))?;
    if meta.len() > MAX_BYTES {
        return Err(one(format!(
            "{name}: {} bytes is not a build catalog (at most {MAX_BYTES}); give a CSV in the format of enforcer/data/exchange-builds.csv",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| one(format!("{name}: cannot read the catalog file: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        one(format!(
            "{name}:{line}: not UTF-8 text; save the catalog as UTF-8 CSV"
        ))
    })?;
    // Leaked on purpose: rows borrow their labels for the life of the process, like the built-in ones.
    let text: &'static str = Box::leak(text.into_boxed_str());
    parse(&name, text)
}

/// Validates catalog text; `name` names it in problems.
pub fn parse(name: &str, text: &'static str) -> Result<CatalogFile, CatalogFileError> {
    let mut problems = Vec::new();
    let mut more = 0;
    let mut problem = |line: usize, m: String| {
        if problems.len() < MAX_PROBLEMS {
            problems.push(format!("{name}:{line}: {m}"));
        } else {
            more += 1;
        }
    };
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    match lines.next() {
        Some((_, first)) if first.trim_start_matches('\u{feff}').trim() == HEADER => {}
        _ => problem(
            1,
            format!("the first line must be the header `{HEADER}` (the format of enforcer/data/exchange-builds.csv)"),
        ),
    }
    let builtin = Catalog::with(Vec::new());
    let mut rows: Vec<(usize, Release)> = Vec::new();
    let mut bad_rows = 0;
    for (n, line) in lines {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        match check_row(line) {
            Err(m) => {
                bad_rows += 1;
                problem(n, m)
            }
            Ok(r) => {
                if let Some((first, _)) = rows.iter().find(|(_, x)| x.build == r.build) {
                    bad_rows += 1;
                    problem(
                        n,
                        format!(
                            "build {} is already listed on line {first}; keep one row per build",
                            r.build
                        ),
                    );
                } else {
                    rows.push((n, r));
                }
            }
        }
    }
    if rows.is_empty() && bad_rows == 0 {
        problem(1, "no rows: add one line per build after the header".into());
    }
    if !problems.is_empty() {
        return Err(CatalogFileError { problems, more });
    }
    let replacing = rows
        .iter()
        .filter(|(_, r)| builtin.exact(r.build).is_some())
        .count();
    Ok(CatalogFile {
        rows: rows.into_iter().map(|(_, r)| r).collect(),
        replacing,
    })
}

fn check_row(line: &'static str) -> Result<Release, String> {
    if line.contains('"') {
        return Err("quoted fields are not supported: write the row without quotes and without commas in the label".into());
    }
    let cols: Vec<&str> = line.split(',').collect();
    if !(4..=5).contains(&cols.len()) {
        return Err(format!(
            "{} columns; a row has 5 ({HEADER}; end_of_support may be empty) and no commas in the label",
            cols.len()
        ));
    }
    let version = ExVersion::from_catalog(cols[0]).ok_or_else(|| {
        format!(
            "`{}` is not an Exchange product; write it as the built-in catalog does, e.g. `Exchange Server 2019` or `Exchange Server SE`",
            cols[0].trim()
        )
    })?;
    if cols[1].trim().is_empty() {
        return Err("the version_label is empty; name the release, e.g. `Exchange Server 2019 CU15 Nov26SU`".into());
    }
    let build = Build::parse(cols[2].trim().as_bytes())
        .filter(|b| b.len() >= 3)
        .ok_or_else(|| {
            format!(
                "`{}` is not a build number; write it dotted, e.g. 15.2.1748.39",
                cols[2].trim()
            )
        })?;
    let of_build = ExVersion::of_build(build);
    if of_build != Some(version) {
        return Err(format!(
            "build {build} belongs to {}, not to the row's product `{}`",
            of_build.map_or_else(
                || "Exchange Online (15.20 and later)".to_string(),
                |v| v.name()
            ),
            cols[0].trim()
        ));
    }
    for (i, what) in [(3, "release_date"), (4, "end_of_support")] {
        let v = cols.get(i).map_or("", |v| v.trim());
        if !v.is_empty() && parse_date(v).is_none() {
            return Err(format!(
                "{what} `{v}` is not a date; write YYYY-MM-DD (or YYYY-MM when only the month is known)"
            ));
        }
    }
    let (r, _) = parse_row(line).ok_or_else(|| "the row cannot be read".to_string())?;
    debug_assert_eq!(r.kind, Kind::of_label(r.label));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<CatalogFile, CatalogFileError> {
        parse("ops.csv", Box::leak(text.to_string().into_boxed_str()))
    }

    fn problems(text: &str) -> Vec<String> {
        check(text).unwrap_err().problems
    }

    #[test]
    fn good_rows_are_laid_over_the_built_in_catalog() {
        let f = check(&format!(
            "{HEADER}\n# added by ops\nExchange Server SE,Exchange Server SE RTM Dec26SU,15.2.2562.99,2026-12-08,\n\
Exchange Server 2019,Exchange Server 2019 CU14 Apr24HU (relabelled),15.2.1544.11,2024-04-23,2025-10-14\n"
        ))
        .unwrap();
        assert_eq!((f.rows.len(), f.replacing), (2, 1));
        let c = Catalog::with(f.rows);
        let r = c.exact(Build::new(15, 2, 2562, 99)).unwrap();
        assert_eq!((r.version, r.kind), (ExVersion::Se, Kind::Security));
        assert_eq!(
            c.exact(Build::new(15, 2, 1544, 11)).unwrap().label,
            "Exchange Server 2019 CU14 Apr24HU (relabelled)"
        );
        assert_eq!(c.releases.len(), Catalog::get().releases.len() + 1);
        assert!(c.releases.windows(2).all(|w| w[0].build < w[1].build));
        assert_eq!(
            c.of_version(ExVersion::Se).last().unwrap().build,
            Build::new(15, 2, 2562, 99)
        );
    }

    #[test]
    fn the_shipped_catalog_fails_the_strict_check_only_on_its_two_duplicates() {
        let f = check(include_str!("../../data/exchange-builds.csv"));
        // The shipped file lists two builds twice (the loader keeps one); the strict check says so.
        let e = f.unwrap_err();
        assert!(
            e.problems
                .iter()
                .all(|p| p.contains("already listed on line")),
            "{e}"
        );
        assert_eq!(e.problems.len(), 2, "{e}");
    }

    #[test]
    fn bad_inputs_name_the_line_and_the_fix() {
        let cases: &[(&str, &str)] = &[
            ("product,label,build\nExchange Server 2019,x,15.2.1.1,2024-01-01,\n", "ops.csv:1: the first line must be the header"),
            ("", "ops.csv:1: the first line must be the header"),
            (&format!("{HEADER}\n"), "ops.csv:1: no rows"),
            (&format!("{HEADER}\nExchange Server 2019,x,15.2.1544.99\n"), "ops.csv:2: 3 columns"),
            (&format!("{HEADER}\nExchange Server 2019,a,b,15.2.1544.99,2024-01-01,\n"), "ops.csv:2: 6 columns"),
            (&format!("{HEADER}\nExchange Server 2029,x,15.2.1544.99,2024-01-01,\n"), "ops.csv:2: `Exchange Server 2029` is not an Exchange product"),
            (&format!("{HEADER}\nExchange Server 2019,,15.2.1544.99,2024-01-01,\n"), "ops.csv:2: the version_label is empty"),
            (&format!("{HEADER}\nExchange Server 2019,x,15.2.x.1,2024-01-01,\n"), "ops.csv:2: `15.2.x.1` is not a build number"),
            (&format!("{HEADER}\nExchange Server 2019,x,15.1.2507.99,2024-01-01,\n"), "ops.csv:2: build 15.1.2507.99 belongs to Exchange Server 2016"),
            (&format!("{HEADER}\nExchange Server 2019,x,15.20.7633.34,2024-01-01,\n"), "belongs to Exchange Online"),
            (&format!("{HEADER}\nExchange Server 2019,x,15.2.1544.99,01/02/2024,\n"), "ops.csv:2: release_date `01/02/2024` is not a date"),
            (&format!("{HEADER}\nExchange Server 2019,x,15.2.1544.99,2024-01-01,2025-13-01\n"), "ops.csv:2: end_of_support `2025-13-01` is not a date"),
            (&format!("{HEADER}\n\"Exchange Server 2019\",x,15.2.1544.99,2024-01-01,\n"), "ops.csv:2: quoted fields"),
            (&format!("{HEADER}\nExchange Server 2019,a,15.2.1544.99,2024-01-01,\n\nExchange Server 2019,b,15.2.1544.99,2024-01-01,\n"), "ops.csv:4: build 15.2.1544.99 is already listed on line 2"),
        ];
        for (text, want) in cases {
            let p = problems(text);
            assert!(p.iter().any(|m| m.contains(want)), "{text:?}: {p:?}");
        }
        // Many bad rows: the first ones are listed, the rest counted.
        let many: String = std::iter::once(HEADER.to_string())
            .chain((0..30).map(|_| "nonsense".to_string()))
            .map(|l| l + "\n")
            .collect();
        let e = check(&many).unwrap_err();
        assert_eq!((e.problems.len(), e.more), (MAX_PROBLEMS, 10));
        assert!(e.to_string().ends_with("… and 10 more problems"));
    }

    #[test]
    fn files_that_cannot_be_read() {
        let e = load(Path::new("/nonexistent/enforcer-catalog.csv")).unwrap_err();
        assert!(e.problems[0].starts_with("/nonexistent/enforcer-catalog.csv: cannot read"));
        let dir = std::env::temp_dir().join(format!("enforcer-catalog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.csv");
        std::fs::write(
            &p,
            b"product,version_label,build,release_date,end_of_support\n\xff\xfe\n",
        )
        .unwrap();
        let e = load(&p).unwrap_err();
        assert!(
            e.problems[0].ends_with(":2: not UTF-8 text; save the catalog as UTF-8 CSV"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod config_tests {
    use crate::config::FileConfig;

    #[test]
    fn classifier_catalog_is_validated_when_the_config_is_read() {
        let dir = std::env::temp_dir().join(format!("enforcer-catalog-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.csv");
        std::fs::write(
            &good,
            format!(
                "{}\nExchange Server SE,Exchange Server SE RTM Dec26SU,15.2.2562.99,2026-12-08,\n",
                super::HEADER
            ),
        )
        .unwrap();
        let bad = dir.join("bad.csv");
        std::fs::write(
            &bad,
            format!(
                "{}\nExchange Server SE,x,15.1.1.1,2026-12-08,\n",
                super::HEADER
            ),
        )
        .unwrap();
        let cfg = FileConfig::parse(
            "enforcer.toml",
            &format!("[classifier]\ncatalog = {:?}\n", good.display().to_string()),
        )
        .unwrap();
        assert_eq!(cfg.catalog.as_deref(), Some(good.as_path()));
        let e = FileConfig::parse(
            "enforcer.toml",
            &format!(
                "# ops\n[classifier]\ncatalog = {:?}\n",
                bad.display().to_string()
            ),
        )
        .unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (3, "classifier.catalog"));
        assert!(
            e.message
                .contains("bad.csv:2: build 15.1.1.1 belongs to Exchange Server 2016"),
            "{e}"
        );
        let e = FileConfig::parse(
            "enforcer.toml",
            "[classifier]\ncatalog = \"/nonexistent/x.csv\"\n",
        )
        .unwrap_err();
        assert!(e.message.contains("cannot read the catalog file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Address lists for `enforcer import`, `block --from` and `unset --from`: one IP or CIDR per line,
//! `#` and `;` start a comment (so plain lists and the Spamhaus DROP format, `1.10.16.0/20 ; SBL256894`,
//! both read as they are). Sans-IO: bytes in, prefixes and line-numbered errors out; the CLI and the
//! daemon parse with the same code so they report the same lines.

use std::fmt;

use crate::net::Prefix;
use crate::rule::{Rule, RuleSource, Verdict};

/// Names of lists (`--list NAME`) are kept short and printable: they appear in `list` output and
/// in the store.
pub const MAX_LIST_NAME: usize = 64;

/// At most this many bad lines are printed; the total is always given.
pub const SHOWN_ERRORS: usize = 20;

/// One line that is not an address or prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// 1-based.
    pub line: usize,
    /// The line as read (lossy UTF-8, trimmed, cut to 80 characters).
    pub text: String,
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: `{}`: {}", self.line, self.text, self.message)
    }
}

/// A parsed list: unique prefixes in order ([`Prefix`]'s `Ord`), and every bad line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Feed {
    pub prefixes: Vec<Prefix>,
    pub errors: Vec<LineError>,
    /// Lines that named a prefix already seen earlier in the file.
    pub duplicates: usize,
}

impl Feed {
    /// Every bad line (up to [`SHOWN_ERRORS`]) on its own line, then how many there were and how to
    /// proceed. `source` names the input (a path or `stdin`).
    pub fn error_report(&self, source: &str) -> String {
        let mut s = String::new();
        for e in self.errors.iter().take(SHOWN_ERRORS) {
            s.push_str(&format!("{source}: {e}\n"));
        }
        if self.errors.len() > SHOWN_ERRORS {
            s.push_str(&format!(
                "{source}: ... and {} more bad lines\n",
                self.errors.len() - SHOWN_ERRORS
            ));
        }
        s.push_str(&format!(
            "{source}: {} bad line{} ({} good); nothing was applied. Fix the lines, or pass --skip-invalid to apply the good ones",
            self.errors.len(),
            if self.errors.len() == 1 { "" } else { "s" },
            self.prefixes.len()
        ));
        s
    }
}

/// Parses a whole list. Never fails: bad lines are collected in [`Feed::errors`]. The prefixes come
/// out sorted and without repeats: one sort of the whole list is cheaper than a hash-set probe per
/// line (a million lines: a tenth of the time), and everything downstream wants them in order.
pub fn parse(bytes: &[u8]) -> Feed {
    let mut feed = Feed::default();
    feed.prefixes.reserve(bytes.len() / 14);
    // A UTF-8 byte order mark (Windows editors) is not part of the first address.
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = i + 1;
        let content = match raw.iter().position(|b| *b == b'#' || *b == b';') {
            Some(at) => &raw[..at],
            None => raw,
        };
        let content = content.trim_ascii();
        if content.is_empty() {
            continue;
        }
        let bad = |message: String| LineError {
            line,
            text: shown(raw),
            message,
        };
        let Ok(text) = std::str::from_utf8(content) else {
            feed.errors.push(bad(
                "not UTF-8 text; a list holds one IP or CIDR per line".into()
            ));
            continue;
        };
        let mut words = text.split_ascii_whitespace();
        let first = words.next().unwrap_or_default();
        if let Some(extra) = words.next() {
            feed.errors.push(bad(format!(
                "one address or prefix per line; `{extra}` follows it (start comments with # or ;)"
            )));
            continue;
        }
        match first.parse::<Prefix>() {
            Ok(p) => feed.prefixes.push(p),
            Err(e) => feed.errors.push(bad(e.to_string())),
        }
    }
    let lines = feed.prefixes.len();
    feed.prefixes.sort_unstable();
    feed.prefixes.dedup();
    feed.duplicates = lines - feed.prefixes.len();
    feed
}

fn shown(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw.trim_ascii());
    match s.char_indices().nth(80) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.into_owned(),
    }
}

/// What every entry of one import shares: the action and TTL are given once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pub verdict: Verdict,
    pub expires_at: Option<i64>,
    pub reason: Option<String>,
    pub created_at: i64,
    pub list: Option<String>,
}

impl Template {
    /// The operator rule for one prefix of the list.
    pub fn rule(&self, prefix: Prefix) -> Rule {
        Rule {
            prefix,
            verdict: self.verdict.clone(),
            expires_at: self.expires_at,
            reason: self.reason.clone(),
            created_at: self.created_at,
            source: RuleSource::Operator,
            list: self.list.clone(),
        }
    }

    /// Checks the shared parts once; the error says what is wrong and how to fix it.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(name) = &self.list {
            check_list_name(name)?;
        }
        self.rule(Prefix::host(std::net::Ipv4Addr::UNSPECIFIED.into()))
            .validate()
    }
}

/// The prefixes of the rules of list `name` that are not in `keep`: what replacing the list with
/// `keep` removes.
pub fn stale<'a>(
    rules: impl Iterator<Item = &'a Rule>,
    name: &str,
    keep: &[Prefix],
) -> Vec<Prefix> {
    let keep: std::collections::HashSet<&Prefix> = keep.iter().collect();
    rules
        .filter(|r| r.list.as_deref() == Some(name) && !keep.contains(&r.prefix))
        .map(|r| r.prefix)
        .collect()
}

/// The prefixes one per line, as sent to the daemon (canonical, so it parses them back exactly).
pub fn to_text(prefixes: &[Prefix]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(prefixes.len() * 16);
    for p in prefixes {
        let _ = writeln!(s, "{p}");
    }
    s
}

/// The prefixes in the compact form the CLI hands the daemon (`packed` of an `import` or
/// `remove_rules` request), so a list is parsed once, by the CLI: per prefix one byte (the length,
/// plus 64 for IPv6) and the 4 or 16 address bytes, all of it in base64. Decoding costs a few
/// nanoseconds an entry where parsing the text again cost a few hundred.
pub fn pack(prefixes: &[Prefix]) -> String {
    let mut raw = Vec::with_capacity(prefixes.len() * 8);
    for p in prefixes {
        match p.addr() {
            std::net::IpAddr::V4(a) => {
                raw.push(p.len());
                raw.extend_from_slice(&a.octets());
            }
            std::net::IpAddr::V6(a) => {
                raw.push(64 + p.len());
                raw.extend_from_slice(&a.octets());
            }
        }
    }
    base64_encode(&raw)
}

/// The prefixes of [`pack`]ed text; an error names what is wrong (only a client that does not speak
/// the protocol sends such text).
pub fn unpack(text: &str) -> Result<Vec<Prefix>, String> {
    let raw = base64_decode(text.as_bytes())
        .ok_or_else(|| "packed entries are not base64".to_string())?;
    let mut out = Vec::with_capacity(raw.len() / 5);
    let mut rest = &raw[..];
    while let Some((&tag, tail)) = rest.split_first() {
        let (addr, len, size) = match tag {
            0..=32 => {
                let Some(b) = tail.first_chunk::<4>() else {
                    break;
                };
                (std::net::IpAddr::from(*b), tag, 4)
            }
            64..=192 => {
                let Some(b) = tail.first_chunk::<16>() else {
                    break;
                };
                (std::net::IpAddr::from(*b), tag - 64, 16)
            }
            _ => return Err(format!("packed entry {} has tag {tag}", out.len() + 1)),
        };
        let p = Prefix::new(addr, len).map_err(|e| e.to_string())?;
        // Canonical only (an IPv4-mapped IPv6 address is written as IPv4), as parsing makes them.
        if p != Prefix::containing(addr, len) {
            return Err(format!("packed entry {p} is not in canonical form"));
        }
        out.push(p);
        rest = &tail[size..];
    }
    if !rest.is_empty() {
        return Err("packed entries end in the middle of an entry".into());
    }
    Ok(out)
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 without padding.
fn base64_encode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len().div_ceil(3) * 4);
    for chunk in raw.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        let sextets = [n >> 18, n >> 12, n >> 6, n].map(|x| BASE64[(x & 63) as usize]);
        out.extend_from_slice(&sextets[..chunk.len() + 1]);
    }
    String::from_utf8(out).expect("base64 is ASCII")
}

/// Standard base64, padding optional; `None` on any other byte or a dangling sextet.
fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut value = [255u8; 256];
    for (i, c) in BASE64.iter().enumerate() {
        value[usize::from(*c)] = i as u8;
    }
    let text = text
        .strip_suffix(b"==")
        .or_else(|| text.strip_suffix(b"="))
        .unwrap_or(text);
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    for chunk in text.chunks(4) {
        let mut n = 0u32;
        for (k, c) in chunk.iter().enumerate() {
            let v = value[usize::from(*c)];
            if v == 255 {
                return None;
            }
            n |= u32::from(v) << (18 - 6 * k);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        match chunk.len() {
            4 => out.extend_from_slice(&bytes),
            3 => out.extend_from_slice(&bytes[..2]),
            2 => out.push(bytes[0]),
            _ => return None,
        }
    }
    Some(out)
}

/// Checks a `--list NAME`; the error says what is allowed.
pub fn check_list_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_LIST_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--list `{name}` must be 1 to {MAX_LIST_NAME} letters, digits, `-`, `_` or `.` (e.g. spamhaus-drop)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn plain_list_with_comments_and_blank_lines() {
        let f = parse(b"# blocklist\n192.0.2.7\n\n  198.51.100.0/24  \r\n2001:db8::/32 # v6\n;x\n");
        assert_eq!(
            f.prefixes,
            vec![p("192.0.2.7"), p("198.51.100.0/24"), p("2001:db8::/32")]
        );
        assert!(f.errors.is_empty());
    }

    #[test]
    fn spamhaus_drop_format() {
        let text = b"; Spamhaus DROP List 2024/01/01 - (c) 2024 The Spamhaus Project SLU\n\
; https://www.spamhaus.org/drop/drop.txt\n\
; Last-Modified: Mon, 01 Jan 2024 00:00:00 GMT\n\
; Expires: Mon, 01 Jan 2024 01:00:00 GMT\n\
1.10.16.0/20 ; SBL256894\n\
1.19.0.0/16 ; SBL434604\n\
2001:678:738::/48 ; SBL585815\n";
        let f = parse(text);
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        assert_eq!(
            f.prefixes,
            vec![p("1.10.16.0/20"), p("1.19.0.0/16"), p("2001:678:738::/48")]
        );
    }

    #[test]
    fn bad_lines_are_numbered_and_good_ones_kept() {
        let f = parse(
            b"192.0.2.1\n10.1.2.3/16\nmail.example\n192.0.2.2 extra\n\xff\xfe\n::1/129\n192.0.2.3",
        );
        assert_eq!(f.prefixes, vec![p("192.0.2.1"), p("192.0.2.3")]);
        let lines: Vec<usize> = f.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6]);
        assert!(
            f.errors[0].message.contains("10.1.0.0/16"),
            "{}",
            f.errors[0]
        );
        assert!(f.errors[2].message.contains("`extra`"), "{}", f.errors[2]);
        assert!(f.errors[3].message.contains("UTF-8"), "{}", f.errors[3]);
        let report = f.error_report("list.txt");
        assert!(
            report.starts_with("list.txt: line 2: `10.1.2.3/16`: "),
            "{report}"
        );
        assert!(
            report.contains("5 bad lines (2 good); nothing was applied"),
            "{report}"
        );
        assert!(report.contains("--skip-invalid"), "{report}");
    }

    #[test]
    fn duplicates_count_once_and_bom_is_ignored() {
        let f = parse(b"\xef\xbb\xbf192.0.2.1\n192.0.2.1/32\n192.0.2.1\n");
        assert_eq!(f.prefixes, vec![p("192.0.2.1")]);
        assert_eq!(f.duplicates, 2);
    }

    #[test]
    fn many_errors_are_summarised() {
        let text: String = (0..50).map(|i| format!("bad{i}\n")).collect();
        let f = parse(text.as_bytes());
        assert_eq!(f.errors.len(), 50);
        let report = f.error_report("stdin");
        assert_eq!(report.lines().count(), SHOWN_ERRORS + 2, "{report}");
        assert!(report.contains("and 30 more bad lines"), "{report}");
        // Long lines are cut.
        let f = parse("x".repeat(500).as_bytes());
        assert!(f.errors[0].text.len() < 100);
    }

    #[test]
    fn template_rules_and_stale_entries() {
        let t = Template {
            verdict: Verdict::Drop,
            expires_at: Some(2_000),
            reason: Some("feed".into()),
            created_at: 1_000,
            list: Some("drop".into()),
        };
        assert!(t.validate().is_ok());
        let r = t.rule(p("192.0.2.0/24"));
        assert_eq!(
            (r.list.as_deref(), r.expires_at),
            (Some("drop"), Some(2_000))
        );
        assert!(Template {
            list: Some("a b".into()),
            ..t.clone()
        }
        .validate()
        .is_err());
        assert!(Template {
            expires_at: Some(1_000),
            ..t.clone()
        }
        .validate()
        .is_err());
        let old = [
            t.rule(p("192.0.2.0/24")),
            t.rule(p("198.51.100.0/24")),
            Template {
                list: None,
                ..t.clone()
            }
            .rule(p("203.0.113.1")),
            Template {
                list: Some("other".into()),
                ..t.clone()
            }
            .rule(p("203.0.113.2")),
        ];
        assert_eq!(
            stale(old.iter(), "drop", &[p("192.0.2.0/24")]),
            vec![p("198.51.100.0/24")]
        );
        let text = to_text(&[p("192.0.2.7"), p("2001:db8::/32")]);
        assert_eq!(
            parse(text.as_bytes()).prefixes,
            vec![p("192.0.2.7"), p("2001:db8::/32")]
        );
    }

    #[test]
    fn packed_form_round_trips_and_bad_input_is_refused() {
        let all = [
            p("0.0.0.0/0"),
            p("192.0.2.7"),
            p("198.51.100.0/24"),
            p("::/0"),
            p("2001:db8::1"),
            p("2001:db8::/32"),
        ];
        for n in 0..=all.len() {
            let text = pack(&all[..n]);
            assert_eq!(unpack(&text).unwrap(), all[..n].to_vec(), "{n}: {text}");
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8");
        assert_eq!(base64_decode(b"Zm8=").unwrap(), b"fo");
        assert!(unpack("Zm9v!mFy").is_err());
        // Host bits set, a bad tag, a cut entry, an IPv4-mapped IPv6 address.
        assert!(unpack(&base64_encode(&[24, 192, 0, 2, 1])).is_err());
        assert!(unpack(&base64_encode(&[40, 192, 0, 2, 1])).is_err());
        assert!(unpack(&base64_encode(&[32, 192, 0, 2])).is_err());
        let mapped: std::net::Ipv6Addr = "::ffff:192.0.2.1".parse().unwrap();
        let mut raw = vec![64 + 128];
        raw.extend_from_slice(&mapped.octets());
        assert!(unpack(&base64_encode(&raw)).is_err());
    }

    #[test]
    fn list_names() {
        assert!(check_list_name("spamhaus-drop").is_ok());
        assert!(check_list_name("feed_v6.2").is_ok());
        for bad in ["", "a b", "x/y", &"a".repeat(65), "naïve"] {
            assert!(check_list_name(bad).is_err(), "{bad}");
        }
    }
}

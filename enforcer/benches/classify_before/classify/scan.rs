//! Reads mixed input line by line, finds each kind of SMTP evidence itself (greetings, replies, EHLO
//! commands and responses, header fields with folding) and turns each into weighted candidates.
//! Transcript prefixes such as `S: `, `C: `, `<- `, ` -> `, `<<< `, `>>> ` are skipped.

use super::build::Build;
use super::catalog::ExVersion;
use super::chain::{self, Hop};
use super::signature::{self, Hit, MsSignal};
use super::{evidence_text, EvidenceItem, EvidenceKind, Product};
use crate::smtp::{self, EhloResponse};

/// A set of Exchange versions (bit = `ExVersion as u16`): what a piece of evidence allows.
pub(crate) type Era = u16;

pub(crate) const fn era(vs: &[ExVersion]) -> Era {
    let mut e = 0;
    let mut i = 0;
    while i < vs.len() {
        e |= 1 << vs[i] as u16;
        i += 1;
    }
    e
}

use ExVersion::*;
pub(crate) const ERA_2000_2003: Era = era(&[V2000, V2003]);
pub(crate) const ERA_2007_ON: Era = era(&[V2007, V2010, V2013, V2016, V2019, Se]);
pub(crate) const ERA_2013_ON: Era = era(&[V2013, V2016, V2019, Se]);
const ERA_2010_ON: Era = era(&[V2010, V2013, V2016, V2019, Se]);
const ERA_XEXCH50: Era = era(&[V2000, V2003, V2007, V2010]);
const ERA_2000_ON: Era = era(&[V2000, V2003, V2007, V2010, V2013, V2016, V2019, Se]);

pub(crate) fn era_versions(e: Era) -> Vec<ExVersion> {
    ExVersion::ALL
        .into_iter()
        .filter(|v| e & (1 << *v as u16) != 0)
        .collect()
}

/// `2013, 2016, 2019 or SE`.
pub(crate) fn era_text(e: Era) -> String {
    // Written straight into one string: this is part of most Exchange findings.
    let allowed = |v: &ExVersion| e & (1 << *v as u16) != 0;
    let n = ExVersion::ALL.iter().filter(|v| allowed(v)).count();
    if n == 0 {
        return "none".into();
    }
    let mut out = String::with_capacity(8 * n);
    for (k, v) in ExVersion::ALL.iter().filter(|v| allowed(v)).enumerate() {
        if k > 0 {
            out.push_str(if k + 1 == n { " or " } else { ", " });
        }
        out.push_str(v.id());
    }
    out
}

/// One reading of the evidence, with how much it weighs (0..1).
#[derive(Clone, Debug)]
pub(crate) struct Candidate {
    pub product: Product,
    pub version: Option<String>,
    pub build: Option<Build>,
    /// For Exchange without a build: the versions the evidence allows (0 = no constraint).
    pub era: Era,
    pub weight: f64,
    pub evidence: EvidenceItem,
}

/// What a candidate claims, before its evidence is attached.
struct Claim {
    product: Product,
    version: Option<String>,
    build: Option<Build>,
    era: Era,
    weight: f64,
}

impl Claim {
    /// A claim that names a product (and the Exchange versions it allows) but no version or build.
    fn bare(product: Product, era: Era, weight: f64) -> Self {
        Self {
            product,
            version: None,
            build: None,
            era,
            weight,
        }
    }
}

pub(crate) struct Scanned {
    pub lines: usize,
    /// SMTP items recognised (replies, commands, header fields).
    pub items: usize,
    pub candidates: Vec<Candidate>,
    /// Received hops, newest (top) first.
    pub hops: Vec<Hop>,
}

fn strip_prefix(line: &[u8]) -> &[u8] {
    let mut l = line.trim_ascii_start();
    if l.len() >= 2 && matches!(l[0], b'S' | b'C' | b's' | b'c') && l[1] == b':' {
        l = l[2..].trim_ascii_start();
    }
    let arrows = l
        .iter()
        .take_while(|b| matches!(b, b'<' | b'>' | b'-' | b'~' | b'*'))
        .count();
    if arrows > 0 && arrows <= 3 && l.get(arrows).is_some_and(|b| *b == b' ' || *b == b'\t') {
        l = l[arrows..].trim_ascii_start();
    }
    l
}

fn is_reply_line(l: &[u8]) -> bool {
    l.len() >= 3
        && l[..3].iter().all(u8::is_ascii_digit)
        && (1..=5).contains(&(l[0] - b'0'))
        && matches!(l.get(3), None | Some(b' ' | b'-'))
}

/// Not a header field, reply, EHLO/HELO command or mbox separator: text that can only be the rest of
/// the field above it.
fn is_stray_continuation(raw: &[u8]) -> bool {
    let l = strip_prefix(raw);
    !l.is_empty()
        && header_name(l).is_none()
        && !is_reply_line(l)
        && !(l.len() >= 5
            && (l[..5].eq_ignore_ascii_case(b"EHLO ")
                || l[..5].eq_ignore_ascii_case(b"HELO ")
                || l.starts_with(b"From ")))
}

/// A header field line: `Name:` with a printable-ASCII name.
fn header_name(l: &[u8]) -> Option<&[u8]> {
    let n = l
        .iter()
        .take(80)
        .take_while(|b| (33..=126).contains(*b) && **b != b':')
        .count();
    (n > 0 && l.get(n) == Some(&b':')).then(|| &l[..n])
}

struct Scanner {
    out: Scanned,
    reply: Vec<u8>,
    header: Vec<u8>,
    header_kind: Option<HeaderKind>,
    scratch: Vec<u8>,
    tokens: smtp::Tokens,
    greeted: bool,
    chain_closed: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum HeaderKind {
    Received,
    MimeOle,
    Mailer,
    Other,
}

/// The scanner's working buffers, kept per thread between calls so that classifying many small
/// documents does not allocate and regrow them every time.
#[derive(Default)]
struct Buffers {
    reply: Vec<u8>,
    header: Vec<u8>,
    scratch: Vec<u8>,
    tokens: smtp::Tokens,
}

/// Buffers larger than this are not kept (one huge input should not pin its memory).
const KEEP_BUFFER: usize = 64 * 1024;

thread_local! {
    static BUFFERS: std::cell::Cell<Option<Buffers>> = const { std::cell::Cell::new(None) };
}

pub(crate) fn scan(input: &[u8]) -> Scanned {
    let mut bufs = BUFFERS.take().unwrap_or_default();
    let out = scan_with(input, &mut bufs);
    let held = [
        bufs.reply.capacity(),
        bufs.header.capacity(),
        bufs.scratch.capacity(),
        // Entries of a few words each.
        bufs.tokens.capacity() * 32,
    ];
    if held.iter().all(|n| *n <= KEEP_BUFFER) {
        BUFFERS.set(Some(bufs));
    }
    out
}

fn scan_with(input: &[u8], bufs: &mut Buffers) -> Scanned {
    let mut s = Scanner {
        out: Scanned {
            lines: 0,
            items: 0,
            candidates: Vec::new(),
            hops: Vec::new(),
        },
        reply: std::mem::take(&mut bufs.reply),
        header: std::mem::take(&mut bufs.header),
        header_kind: None,
        scratch: std::mem::take(&mut bufs.scratch),
        tokens: std::mem::take(&mut bufs.tokens),
        greeted: false,
        chain_closed: false,
    };
    s.reply.clear();
    s.header.clear();
    s.scratch.clear();
    let mut pos = 0;
    while pos < input.len() {
        let rest = &input[pos..];
        let (raw, next) = match crate::smtp::line::find_lf(rest) {
            Some(i) => (&rest[..i], pos + i + 1),
            None => (rest, input.len()),
        };
        pos = next;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            s.flush_header();
            // The first header block that has Received fields is the message's route; Received
            // fields further down belong to quoted or forwarded messages (bounces, attachments).
            s.chain_closed |= !s.out.hops.is_empty();
            continue;
        }
        s.out.lines += 1;
        if s.header_kind.is_some() && matches!(raw[0], b' ' | b'\t') {
            if s.header_kind != Some(HeaderKind::Other) {
                s.header.extend_from_slice(raw);
            }
            continue;
        }
        // Headers pasted from mail clients or web pages often lose the indentation of folded lines.
        // While a Received field is open, a line that cannot start anything else continues it.
        if s.header_kind == Some(HeaderKind::Received) && is_stray_continuation(raw) {
            s.header.push(b' ');
            s.header.extend_from_slice(raw);
            continue;
        }
        s.flush_header();
        s.line(strip_prefix(raw));
    }
    s.flush_header();
    s.flush_reply();
    bufs.reply = s.reply;
    bufs.header = s.header;
    bufs.scratch = s.scratch;
    bufs.tokens = s.tokens;
    s.out
}

impl Scanner {
    fn line(&mut self, l: &[u8]) {
        if is_reply_line(l) {
            self.reply.extend_from_slice(l);
            self.reply.push(b'\n');
            if l.get(3) != Some(&b'-') {
                self.flush_reply();
            }
            return;
        }
        // A multi-line reply cut short by something else: read what there was as far as it goes.
        self.flush_reply();
        if l.len() >= 5
            && (l[..5].eq_ignore_ascii_case(b"EHLO ") || l[..5].eq_ignore_ascii_case(b"HELO "))
        {
            self.ehlo_command(l);
        } else if let Some(name) = header_name(l) {
            self.out.items += 1;
            self.header_kind = Some(if name.eq_ignore_ascii_case(b"Received") {
                HeaderKind::Received
            } else if name.eq_ignore_ascii_case(b"X-MimeOLE") {
                HeaderKind::MimeOle
            } else if name.eq_ignore_ascii_case(b"X-Mailer") {
                HeaderKind::Mailer
            } else {
                HeaderKind::Other
            });
            self.header.clear();
            if self.header_kind != Some(HeaderKind::Other) {
                self.header.extend_from_slice(&l[name.len() + 1..]);
            }
        }
    }

    fn push(&mut self, c: Claim, kind: EvidenceKind, text: &[u8], finding: String) {
        let evidence = EvidenceItem {
            kind,
            text: evidence_text(text),
            finding,
        };
        let Claim {
            product,
            version,
            build,
            era,
            weight,
        } = c;
        self.out.candidates.push(Candidate {
            product,
            version,
            build,
            era,
            weight,
            evidence,
        });
    }

    fn ehlo_command(&mut self, l: &[u8]) {
        self.scratch.clear();
        self.scratch.extend_from_slice(l);
        self.scratch.push(b'\n');
        let Ok(d) = smtp::decode_ehlo_command(&self.scratch) else {
            return;
        };
        self.out.items += 1;
        let domain = d.value.domain.to_vec();
        if signature::is_exchange_online_host(&domain) {
            let f = format!(
                "the client names itself {}, an Exchange Online host",
                String::from_utf8_lossy(&domain)
            );
            self.push(
                Claim::bare(Product::ExchangeOnline, 0, 0.7),
                EvidenceKind::Ehlo,
                l,
                f,
            );
        }
    }

    fn flush_reply(&mut self) {
        if self.reply.is_empty() {
            return;
        }
        let buf = std::mem::take(&mut self.reply);
        self.reply_block(&buf);
        self.reply = buf;
        self.reply.clear();
    }

    fn reply_block(&mut self, buf: &[u8]) {
        let text = buf.strip_suffix(b"\n").unwrap_or(buf);
        // A multi-line 250 is almost always an EHLO response: decode it as one directly.
        if buf.starts_with(b"250-") {
            if let Ok(e) = smtp::decode_ehlo_response(buf) {
                self.out.items += 1;
                self.ehlo_response(&e.value, text);
                return;
            }
        }
        let Ok(d) = smtp::decode_reply(buf) else {
            return;
        };
        self.out.items += 1;
        let r = d.value;
        let first = r.lines[0];
        match r.code {
            220 | 554 if r.enhanced.is_none() && !self.greeted => {
                self.greeted = true;
                self.greeting(first, &r.lines, text);
            }
            _ => self.reply_text(&r.text(), text),
        }
    }

    fn greeting(&mut self, first: &[u8], lines: &[&[u8]], text: &[u8]) {
        let host = first.split(|b| *b == b' ').next().unwrap_or_default();
        if signature::is_exchange_online_host(host) {
            let f = format!(
                "greeting from {}, an Exchange Online host",
                String::from_utf8_lossy(host)
            );
            self.push(
                Claim::bare(Product::ExchangeOnline, 0, 0.85),
                EvidenceKind::Banner,
                text,
                f,
            );
            return;
        }
        // A multi-line greeting may name the product on any line.
        let Some(hit) = lines.iter().find_map(|l| signature::scan(l)) else {
            return;
        };
        self.hit(hit, EvidenceKind::Banner, text, 0.8, "greeting");
    }

    /// A product named in free text; `base` is the weight of a bare product name.
    fn hit(&mut self, hit: Hit, kind: EvidenceKind, text: &[u8], base: f64, what: &str) {
        match hit.ms {
            Some(MsSignal::Modern) => {
                let f = format!("{what} of Microsoft's Exchange 2007-or-later transport (no version on the wire): Exchange {}", era_text(ERA_2007_ON));
                self.push(
                    Claim::bare(Product::Exchange, ERA_2007_ON, 0.6),
                    kind,
                    text,
                    f,
                );
            }
            Some(MsSignal::Iis(v)) => {
                let win = v.map(|b| format!(" {b}")).unwrap_or_default();
                let f = format!("{what} of the Windows IIS SMTP service{win} (the build is Windows', not Exchange's); Exchange 2000/2003 ran on it");
                self.push(
                    Claim {
                        product: Product::IisSmtp,
                        version: v.map(|b| b.to_string()),
                        build: v,
                        era: iis_era(v),
                        weight: 0.65,
                    },
                    kind,
                    text,
                    f,
                );
            }
            // `V6.5` alone is a version, not a build: it narrows the era only.
            Some(MsSignal::ExchangeBuild(b)) if b.len() < 3 => {
                let Some(v) = ExVersion::of_build(b) else {
                    return;
                };
                let f = format!("{what} names Exchange version {b} (Exchange {})", v.id());
                let claim = Claim::bare(Product::Exchange, era(&[v]), 0.8);
                self.push(claim, kind, text, f);
            }
            Some(MsSignal::ExchangeBuild(b)) => {
                let f = format!("{what} carries Exchange build {b}");
                self.push(
                    Claim {
                        product: Product::Exchange,
                        version: None,
                        build: Some(b),
                        era: 0,
                        weight: 0.9,
                    },
                    kind,
                    text,
                    f,
                );
            }
            None => {
                let weight = if hit.version.is_some() {
                    base + 0.05
                } else {
                    base
                };
                let v = hit
                    .version
                    .as_ref()
                    .map(|v| format!(" {v}"))
                    .unwrap_or_default();
                let f = format!("{what} names {}{v}", hit.product.name());
                self.push(
                    Claim {
                        product: hit.product,
                        version: hit.version,
                        build: None,
                        era: 0,
                        weight,
                    },
                    kind,
                    text,
                    f,
                );
            }
        }
    }

    fn ehlo_response(&mut self, r: &EhloResponse<'_>, text: &[u8]) {
        if signature::is_exchange_online_host(r.domain) {
            let f = format!(
                "EHLO response from {}, an Exchange Online host",
                String::from_utf8_lossy(r.domain)
            );
            self.push(
                Claim::bare(Product::ExchangeOnline, 0, 0.85),
                EvidenceKind::EhloResponse,
                text,
                f,
            );
            return;
        }
        let mut e: Era = ERA_2000_ON | era(&[V5_5]);
        let mut seen = Vec::new();
        for k in &r.keywords {
            // Every Exchange-only keyword starts with X: most keywords need no comparison at all.
            if k.name.first().is_none_or(|b| b | 0x20 != b'x') {
                continue;
            }
            let allowed = match () {
                _ if k.is("XRDST") || k.is("XSHADOWREQUEST") => ERA_2013_ON,
                _ if k.is("XSHADOW") => ERA_2010_ON,
                _ if k.is("X-ANONYMOUSTLS") => ERA_2007_ON,
                _ if k.is("XEXCH50") => ERA_XEXCH50,
                _ if k.is("X-LINK2STATE") => ERA_2000_2003,
                _ if k.is("X-EXPS") => ERA_2000_ON,
                _ => continue,
            };
            seen.push(String::from_utf8_lossy(k.name).into_owned());
            if e & allowed != 0 {
                e &= allowed;
            }
        }
        if seen.is_empty() {
            return;
        }
        let weight = if seen.len() >= 2 { 0.75 } else { 0.7 };
        let f = format!(
            "Exchange-only EHLO keywords {}: Exchange {}",
            seen.join(", "),
            era_text(e)
        );
        self.push(
            Claim::bare(Product::Exchange, e, weight),
            EvidenceKind::EhloResponse,
            text,
            f,
        );
    }

    fn reply_text(&mut self, t: &str, text: &[u8]) {
        let b = t.as_bytes();
        let has = |needle: &str| {
            b.windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
        };
        if has("Queued mail for delivery") {
            let e = if has("InternalId=") {
                ERA_2013_ON
            } else {
                ERA_2007_ON
            };
            let f = format!(
                "Exchange's `Queued mail for delivery` reply: Exchange {}",
                era_text(e)
            );
            self.push(
                Claim::bare(Product::Exchange, e, 0.55),
                EvidenceKind::Reply,
                text,
                f,
            );
        } else if has("Ok: queued as ") {
            self.push(
                Claim::bare(Product::Postfix, 0, 0.5),
                EvidenceKind::Reply,
                text,
                "Postfix's `Ok: queued as` reply".into(),
            );
        } else if t.starts_with("OK id=") {
            self.push(
                Claim::bare(Product::Exim, 0, 0.5),
                EvidenceKind::Reply,
                text,
                "Exim's `OK id=` reply".into(),
            );
        } else if let Some(hit) = signature::scan(b) {
            self.hit(hit, EvidenceKind::Reply, text, 0.55, "reply");
        }
    }

    fn flush_header(&mut self) {
        let Some(kind) = self.header_kind.take() else {
            return;
        };
        if kind == HeaderKind::Other {
            return;
        }
        let raw = std::mem::take(&mut self.header);
        let mut unfolded = std::mem::take(&mut self.scratch);
        // Folded lines are stored without their line breaks (lines are split at LF, so only a stray CR
        // can be left), so there is usually nothing to take out and the trimmed field is already what
        // `unfold_into` would copy.
        debug_assert!(!raw.contains(&b'\n'));
        let breaks = raw.contains(&b'\r');
        let value: &[u8] = if breaks {
            smtp::unfold_into(&raw, &mut unfolded);
            &unfolded
        } else {
            raw.trim_ascii()
        };
        match kind {
            HeaderKind::Received if self.chain_closed => {}
            HeaderKind::Received => {
                if let Ok(r) = self.tokens.fill(value) {
                    self.out.hops.push(chain::hop(&r, value));
                }
            }
            HeaderKind::MimeOle | HeaderKind::Mailer => {
                let name = if kind == HeaderKind::MimeOle {
                    "X-MimeOLE: "
                } else {
                    "X-Mailer: "
                };
                let mut text = name.as_bytes().to_vec();
                text.extend_from_slice(value);
                if let Some(hit) = signature::scan(value) {
                    let keep = matches!(hit.ms, Some(MsSignal::ExchangeBuild(_)))
                        || hit.product == Product::Zimbra;
                    if keep {
                        self.hit(
                            hit,
                            EvidenceKind::Header,
                            &text,
                            // Zimbra's web client names its server; it outweighs the Postfix stamp
                            // Zimbra's own MTA leaves in Received, but not a greeting.
                            0.6,
                            name.trim_end_matches([':', ' ']),
                        );
                    }
                }
            }
            HeaderKind::Other => {}
        }
        self.header = raw;
        self.header.clear();
        self.scratch = unfolded;
    }
}

/// The IIS SMTP service of Windows 2000 (5.0) hosted Exchange 2000 or 2003; of Server 2003 (6.0)
/// only Exchange 2003 (Exchange 2000 does not run on Server 2003).
pub(crate) fn iis_era(v: Option<Build>) -> Era {
    match v.map(|b| (b.major(), b.minor())) {
        Some((6, 0)) => era(&[V2003]),
        Some((5, 0)) | None => ERA_2000_2003,
        Some(_) => 0,
    }
}

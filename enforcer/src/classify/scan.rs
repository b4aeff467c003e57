//! Reads mixed input line by line, finds each kind of SMTP evidence itself (greetings, replies, EHLO
//! commands and responses, header fields with folding) and turns each into weighted candidates.
//! Transcript prefixes such as `S: `, `C: `, `<- `, ` -> `, `<<< `, `>>> ` are skipped, and so are the
//! prefixes tools and logs put in front of a reply or command (see [`evidence_start`]). Lines end at LF,
//! CRLF or a lone CR.

use super::build::Build;
use super::catalog::ExVersion;
use super::chain::{Chain, OrgSignals};
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
    pub chain: Chain,
    /// Exchange's organisation stamps in the message's own header block.
    pub org: OrgSignals,
}

fn strip_prefix(line: &[u8]) -> &[u8] {
    let mut l = line.trim_ascii_start();
    // One test for nearly every line: no prefix starts with another byte (this runs on every line).
    if !l.first().is_some_and(|b| {
        matches!(
            b,
            b'S' | b'C' | b's' | b'c' | b'<' | b'>' | b'-' | b'~' | b'*'
        )
    }) {
        return l;
    }
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

/// Where the reply or command in a line starts, after whatever a tool or log put in front of it:
/// `[*] 10.0.0.1:25 SMTP 220 …`, `[S] 220 …`, `S 220 …`, `2024-06-04 10:11:12 <<< 250 …`, tab-separated
/// log fields, `… said: 550 …`. A reply code or `EHLO`/`HELO` counts when everything before it looks like
/// a prefix (time stamps, addresses, ports, ids, direction markers) or the word right before it is a
/// direction marker (`S`, `SMTP`, `<-`, `said:` …). Lines that start with evidence are returned as they
/// are; so is a line where nothing qualifies. The second value is the length of the line's header field
/// name when the line is a header field, so that nobody reads the name twice. `l` is the line after
/// [`strip_prefix`] and `name` its [`header_name`], which the caller has already read.
fn evidence_start<'a>(l: &'a [u8], name: Option<&[u8]>) -> (&'a [u8], Option<usize>) {
    if let Some(name) = name {
        // `Out: 220 …`, `In: EHLO …` (Postfix's session transcripts), `Server: 250 …`: a direction marker
        // written like a header name. The marker list is the dearer test, so it comes last.
        let rest = l[name.len() + 1..].trim_ascii_start();
        // A reply starts with a digit and a command with E or H: one byte rules out nearly every field.
        let may_hold = rest
            .first()
            .is_some_and(|b| b.is_ascii_digit() || matches!(b | 0x20, b'e' | b'h'));
        if may_hold && (is_reply_line(rest) || is_command(rest)) && is_marker(name) {
            return (rest, None);
        }
        return (l, Some(name.len()));
    }
    (evidence_after_prefix(l), None)
}

/// [`evidence_start`] for a line that is not a header field.
fn evidence_after_prefix(l: &[u8]) -> &[u8] {
    if l.is_empty() || is_reply_line(l) || is_command(l) {
        return l;
    }
    // Only lines with a digit or an `E`/`H` can hold a reply or a command: skip the walk for the rest.
    if !l
        .iter()
        .take(256)
        .any(|b| b.is_ascii_digit() || matches!(b | 0x20, b'e' | b'h'))
    {
        return l;
    }
    let mut all_prefix = true;
    let mut prev: &[u8] = b"";
    let mut pos = 0;
    for _ in 0..16 {
        // The next token.
        while pos < l.len() && matches!(l[pos], b' ' | b'\t') {
            pos += 1;
        }
        if pos >= l.len() || pos > 256 {
            break;
        }
        let rest = &l[pos..];
        if pos > 0 && (all_prefix || is_marker(prev)) && (is_reply_line(rest) || is_command(rest)) {
            return rest;
        }
        let n = rest
            .iter()
            .position(|b| matches!(b, b' ' | b'\t'))
            .unwrap_or(rest.len());
        prev = &rest[..n];
        all_prefix &= is_prefix_token(prev);
        pos += n;
    }
    l
}

fn is_command(l: &[u8]) -> bool {
    l.len() >= 5 && (l[..5].eq_ignore_ascii_case(b"EHLO ") || l[..5].eq_ignore_ascii_case(b"HELO "))
}

/// A token without its brackets and trailing punctuation: `[S]` → `S`, `said:` → `said`.
fn bare_token(t: &[u8]) -> &[u8] {
    let t = t.strip_prefix(b"[").unwrap_or(t);
    let t = t.strip_suffix(b":").unwrap_or(t);
    let t = t.strip_suffix(b"]").unwrap_or(t);
    t.strip_suffix(b",").unwrap_or(t)
}

/// Words tools and logs put right before a reply or command.
fn is_marker(t: &[u8]) -> bool {
    const MARKERS: [&[u8]; 24] = [
        b"S",
        b"C",
        b"SMTP",
        b"ESMTP",
        b"SERVER",
        b"CLIENT",
        b"RECV",
        b"SEND",
        b"SENT",
        b"RCVD",
        b"RX",
        b"TX",
        b"IN",
        b"OUT",
        b"said",
        b"reply",
        b"response",
        b"banner",
        b"greeting",
        b"answer",
        b"<",
        b">",
        b"<<",
        b">>",
    ];
    let b = bare_token(t);
    MARKERS.iter().any(|m| b.eq_ignore_ascii_case(m))
        || (!b.is_empty()
            && b.len() <= 4
            && b.iter()
                .all(|c| matches!(c, b'<' | b'>' | b'-' | b'~' | b'=' | b'*')))
}

/// A token that can only be part of a prefix: time stamps and dates (`10:11:12.345`, `2024-06-04T10:11:12Z`,
/// `Jun`), addresses and ports (`10.0.0.1:25`, `mx.example.com:25`), counters and ids made of digits,
/// bracketed markers (`[*]`, `[+]`), log levels and direction markers.
fn is_prefix_token(t: &[u8]) -> bool {
    const WORDS: [&[u8]; 23] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec", b"mon", b"tue", b"wed", b"thu", b"fri", b"sat", b"sun", b"info", b"debug",
        b"notice", b"trace",
    ];
    let b = bare_token(t);
    if b.len() > 64 {
        return false;
    }
    let letters = b.iter().filter(|c| c.is_ascii_alphabetic()).count();
    if letters == 0 || is_marker(t) {
        return true;
    }
    // ISO time stamps: digits with `T` and `Z`.
    if b.iter().any(u8::is_ascii_digit)
        && b.iter()
            .filter(|c| c.is_ascii_alphabetic())
            .all(|c| matches!(c, b'T' | b'Z'))
    {
        return true;
    }
    // host:port
    if let Some(i) = b.iter().rposition(|c| *c == b':') {
        if i + 1 < b.len() && b[i + 1..].iter().all(u8::is_ascii_digit) {
            return true;
        }
    }
    WORDS.iter().any(|w| b.eq_ignore_ascii_case(w))
}

fn is_reply_line(l: &[u8]) -> bool {
    l.len() >= 3
        && l[..3].iter().all(u8::is_ascii_digit)
        && (1..=5).contains(&(l[0] - b'0'))
        && matches!(l.get(3), None | Some(b' ' | b'-'))
}

fn starts_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay[..needle.len()].eq_ignore_ascii_case(needle)
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Not a header field, reply, EHLO/HELO command or mbox separator: text that can only be the rest of
/// the field above it. `l` and `name` as for [`evidence_start`].
fn is_stray_continuation(l: &[u8], name: Option<&[u8]>) -> bool {
    !l.is_empty()
        && name.is_none()
        && !is_reply_line(l)
        && !(l.len() >= 5
            && (l[..5].eq_ignore_ascii_case(b"EHLO ")
                || l[..5].eq_ignore_ascii_case(b"HELO ")
                || l.starts_with(b"From ")))
}

/// A header field line: `Name:` with a printable-ASCII name that starts with a letter (so that a time
/// stamp such as `2024-06-04T10:11:12` in front of a reply is not read as one).
fn header_name(l: &[u8]) -> Option<&[u8]> {
    if !l.first().is_some_and(u8::is_ascii_alphabetic) {
        return None;
    }
    let n = l
        .iter()
        .take(80)
        .take_while(|b| NAME_BYTE[usize::from(**b)])
        .count();
    (n > 0 && l.get(n) == Some(&b':')).then(|| &l[..n])
}

/// The bytes a header field name is made of (printable ASCII but `:` and, so that `user@host:` in
/// a log line is no header, `@`): one table lookup per byte, as this runs on every line.
static NAME_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 33;
    while b <= 126 {
        t[b] = b != b':' as usize && b != b'@' as usize;
        b += 1;
    }
    t
};

struct Scanner {
    out: Scanned,
    reply: Vec<u8>,
    /// Where the last line of `reply` starts.
    reply_last: usize,
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
    Org(OrgHeader),
    Other,
}

/// Exchange's organisation stamps (see [`OrgSignals`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum OrgHeader {
    Originator,
    AuthSource,
    AuthAs,
    FromEntity,
}

impl OrgHeader {
    fn of(name: &[u8]) -> Option<Self> {
        const NAMES: [(&[u8], OrgHeader); 4] = [
            (b"X-OriginatorOrg", OrgHeader::Originator),
            (
                b"X-MS-Exchange-Organization-AuthSource",
                OrgHeader::AuthSource,
            ),
            (b"X-MS-Exchange-Organization-AuthAs", OrgHeader::AuthAs),
            (
                b"X-MS-Exchange-CrossTenant-FromEntityHeader",
                OrgHeader::FromEntity,
            ),
        ];
        // Cheap reject: every name starts with `X-O` or `X-M`.
        if name.len() < 15 || name[..2] != *b"X-" && name[..2] != *b"x-" {
            return None;
        }
        NAMES
            .iter()
            .find(|(n, _)| name.eq_ignore_ascii_case(n))
            .map(|(_, h)| *h)
    }
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
    /// The last chain's buffers, given back by [`recycle`] once it has been read (a cell of its own:
    /// small to move in and out).
    static CHAIN: std::cell::Cell<Option<Chain>> = const { std::cell::Cell::new(None) };
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

/// Gives the buffers of a chain that has been read back to this thread's scanner, which fills them
/// again for the next header block instead of growing new ones hop by hop.
pub(crate) fn recycle(mut chain: Chain) {
    if chain.capacity() > KEEP_BUFFER {
        return;
    }
    chain.clear();
    CHAIN.set(Some(chain));
}

fn scan_with(input: &[u8], bufs: &mut Buffers) -> Scanned {
    let mut s = Scanner {
        out: Scanned {
            lines: 0,
            items: 0,
            candidates: Vec::new(),
            chain: CHAIN.take().unwrap_or_default(),
            org: OrgSignals::default(),
        },
        reply: std::mem::take(&mut bufs.reply),
        reply_last: 0,
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
        // Lines end at LF, CRLF or a lone CR: old Mac files use the last, and pasted text mixes them.
        let (raw, next) = match crate::smtp::line::find_eol(rest) {
            Some(i) if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') => {
                (&rest[..i], pos + i + 2)
            }
            Some(i) => (&rest[..i], pos + i + 1),
            None => (rest, input.len()),
        };
        pos = next;
        s.physical_line(raw);
    }
    s.flush_header();
    s.flush_reply();
    bufs.reply = s.reply;
    bufs.header = s.header;
    bufs.scratch = s.scratch;
    bufs.tokens = s.tokens;
    s.out
}

/// The finding of an EHLO fingerprint, written out at compile time (it is made for every EHLO response).
macro_rules! fingerprint {
    ($why:literal) => {
        concat!(
            "EHLO response fingerprint: ",
            $why,
            " (lower confidence than a named product)"
        )
    };
}

impl Scanner {
    fn physical_line(&mut self, raw: &[u8]) {
        if raw.is_empty() {
            self.flush_header();
            // The first header block that has Received fields is the message's route; Received
            // fields further down belong to quoted or forwarded messages (bounces, attachments).
            self.chain_closed |= !self.out.chain.is_empty();
            return;
        }
        self.out.lines += 1;
        if self.header_kind.is_some() && matches!(raw[0], b' ' | b'\t') {
            if self.header_kind != Some(HeaderKind::Other) {
                self.header.extend_from_slice(raw);
            }
            return;
        }
        // Headers pasted from mail clients or web pages often lose the indentation of folded lines.
        // While a Received field is open, a line that cannot start anything else continues it.
        let stripped = strip_prefix(raw);
        let name = header_name(stripped);
        if self.header_kind == Some(HeaderKind::Received) && is_stray_continuation(stripped, name) {
            self.header.push(b' ');
            self.header.extend_from_slice(raw);
            return;
        }
        self.flush_header();
        // An indented line never starts a header field (it would be a folded one): in pasted text it is
        // a transcript or prose.
        let (l, name_len) = evidence_start(stripped, name);
        if matches!(raw[0], b' ' | b'\t') && name_len.is_some() {
            return;
        }
        self.line(l, name_len);
    }

    /// One logical line; `name_len` is the length of its header field name when it is one.
    fn line(&mut self, l: &[u8], name_len: Option<usize>) {
        if is_reply_line(l) {
            self.reply_last = self.reply.len();
            self.reply.extend_from_slice(l);
            self.reply.push(b'\n');
            if l.get(3) != Some(&b'-') {
                self.flush_reply();
            }
            return;
        }
        // A multi-line reply cut short by something else: read what there was as far as it goes.
        self.flush_reply();
        // A header field line is never a command (a field name holds no space), so the command test is
        // left for the lines that are no field: most lines of a header block are.
        if let Some(n) = name_len {
            let name = &l[..n];
            self.out.items += 1;
            self.header_kind = Some(if name.eq_ignore_ascii_case(b"Received") {
                HeaderKind::Received
            } else if name.eq_ignore_ascii_case(b"X-MimeOLE") {
                HeaderKind::MimeOle
            } else if name.eq_ignore_ascii_case(b"X-Mailer") {
                HeaderKind::Mailer
            } else if let Some(o) = OrgHeader::of(name) {
                HeaderKind::Org(o)
            } else {
                HeaderKind::Other
            });
            self.header.clear();
            if self.header_kind != Some(HeaderKind::Other) {
                self.header.extend_from_slice(&l[name.len() + 1..]);
            }
        } else if is_command(l) {
            self.ehlo_command(l);
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
        // The finding is made while the command is still borrowed, so that the name is not copied out
        // for the common case (a client that is no Exchange Online host).
        let domain = d.value.domain;
        if signature::is_exchange_online_host(domain) {
            let f = format!(
                "the client names itself {}, an Exchange Online host",
                String::from_utf8_lossy(domain)
            );
            self.push(
                Claim::bare(Product::ExchangeOnline, 0, 0.7),
                EvidenceKind::Ehlo,
                l,
                f,
            );
        }
    }

    /// Reads the reply gathered so far, if any. The test is inlined for the same reason as
    /// [`Scanner::flush_header`]'s: it runs for every line that is not a reply.
    #[inline]
    fn flush_reply(&mut self) {
        if !self.reply.is_empty() {
            self.read_reply();
        }
    }

    fn read_reply(&mut self) {
        let mut buf = std::mem::take(&mut self.reply);
        // A multi-line reply cut after a `220-` line (a tool that stops reading at the first line, a
        // paste that ends there): read it as if that line were its last.
        let last = self.reply_last;
        if buf.get(last + 3) == Some(&b'-') {
            buf[last + 3] = b' ';
        }
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
        // Each Exchange-only keyword allows some versions. They are combined all at once, so that their
        // order never matters; keywords that cannot all hold are reported as a conflict.
        const EXCHANGE_ONLY: [(&str, Era); 7] = [
            ("XRDST", ERA_2013_ON),
            ("XSHADOWREQUEST", ERA_2013_ON),
            ("XSHADOW", ERA_2010_ON),
            ("X-ANONYMOUSTLS", ERA_2007_ON),
            // 2000 to 2010 advertise it, and so do 2013 and later next to XRDST/XSHADOWREQUEST.
            ("XEXCH50", ERA_2000_ON),
            ("X-LINK2STATE", ERA_2000_2003),
            ("X-EXPS", ERA_2000_ON),
        ];
        // Keywords are named by the table's own (upper-case) spelling, which is what the advertised
        // name reads as in upper case: no string is made per keyword.
        let mut seen: Vec<(&str, Era)> = Vec::new();
        for k in &r.keywords {
            // Every Exchange-only keyword starts with X: most keywords need no comparison at all.
            if k.name.first().is_none_or(|b| b | 0x20 != b'x') {
                continue;
            }
            if let Some(known) = EXCHANGE_ONLY.iter().find(|(n, _)| k.is(n)) {
                seen.push(*known);
            }
        }
        if seen.is_empty() {
            self.ehlo_fingerprint(r, text);
            return;
        }
        seen.sort();
        seen.dedup();
        let names: Vec<&str> = seen.iter().map(|(n, _)| *n).collect();
        let mut all = seen.iter().fold(Era::MAX, |a, (_, e)| a & e);
        // 2013 and later advertise XEXCH50 only next to XRDST/XSHADOWREQUEST: a whole EHLO response
        // with XEXCH50 and neither of them is 2010 or older.
        let has = |k: &str| seen.iter().any(|(n, _)| *n == k);
        let older =
            has("XEXCH50") && !has("XRDST") && !has("XSHADOWREQUEST") && all & !ERA_2013_ON != 0;
        if older {
            all &= !ERA_2013_ON;
        }
        let (e, weight, f) = if all != 0 {
            let weight = if seen.len() >= 2 { 0.75 } else { 0.7 };
            let f = format!(
                "Exchange-only EHLO keywords {}{}: Exchange {}",
                names.join(", "),
                if older {
                    " (XEXCH50 without XRDST or XSHADOWREQUEST, which 2013 and later offer next to it)"
                } else {
                    ""
                },
                era_text(all)
            );
            (all, weight, f)
        } else {
            let any = seen.iter().fold(0, |a, (_, e)| a | e);
            let each: Vec<String> = seen
                .iter()
                .map(|(n, e)| format!("{n} {}", era_text(*e)))
                .collect();
            let f = format!(
                "Exchange-only EHLO keywords that conflict ({}): no single version advertises all of them, so Exchange {} is kept",
                each.join("; "),
                era_text(any)
            );
            (any, 0.6, f)
        };
        self.push(
            Claim::bare(Product::Exchange, e, weight),
            EvidenceKind::EhloResponse,
            text,
            f,
        );
    }

    /// Postfix, Exim, Sendmail and OpenSMTPD from an EHLO response alone: the first line's form and the
    /// set of keywords (never their order). Weaker than a product named in a greeting.
    fn ehlo_fingerprint(&mut self, r: &EhloResponse<'_>, text: &[u8]) {
        let g = r.greeting;
        let pleased = contains_ci(g, b"pleased to meet you");
        // `Hello name [addr]` with nothing after the bracket (Exim's form; Sendmail and OpenSMTPD add
        // `, pleased to meet you`, Exchange writes `Hello [addr]`).
        let exim_hello = starts_ci(g, b"Hello ")
            && g.ends_with(b"]")
            && g.split(|b| *b == b' ').filter(|w| !w.is_empty()).count() == 3;
        let (product, weight, why) = if r.has("XFORWARD") || r.has("XCLIENT") {
            (
                Product::Postfix,
                0.55,
                fingerprint!("XFORWARD/XCLIENT are Postfix's extensions"),
            )
        } else if r.has("PIPE_CONNECT") || r.has("X_PIPE_CONNECT") {
            (
                Product::Exim,
                0.55,
                fingerprint!("PIPE_CONNECT is Exim's extension"),
            )
        } else if pleased && (r.has("VERB") || r.has("ONEX") || r.has("DELIVERBY") || r.has("EXPN"))
        {
            (
                Product::Sendmail,
                0.45,
                fingerprint!("`Hello …, pleased to meet you` with VERB/ONEX/DELIVERBY/EXPN is Sendmail's response"),
            )
        } else if pleased && r.has("HELP") {
            (
                Product::Opensmtpd,
                0.4,
                fingerprint!("`Hello …, pleased to meet you` with HELP and none of Sendmail's VERB/ONEX/EXPN is OpenSMTPD's response"),
            )
        } else if exim_hello && r.has("HELP") {
            (
                Product::Exim,
                0.45,
                fingerprint!("`Hello name [addr]` with HELP is Exim's response"),
            )
        } else if g.is_empty() && r.has("ETRN") && r.has("DSN") && !r.has("HELP") {
            (
                Product::Postfix,
                0.4,
                fingerprint!("a bare host name on the first line with ETRN and DSN and no HELP is Postfix's response"),
            )
        } else {
            return;
        };
        let f = why.to_string();
        self.push(
            Claim::bare(product, 0, weight),
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

    /// Ends the open header field. The test is inlined into the line loop: it runs before nearly every
    /// line, and most fields (all but Received and a few X- fields) and every transcript line need no
    /// work, which spares them a call.
    #[inline]
    fn flush_header(&mut self) {
        match self.header_kind.take() {
            None | Some(HeaderKind::Other) => {}
            Some(kind) => self.read_header(kind),
        }
    }

    /// The header field just ended, of a `kind` worth reading.
    fn read_header(&mut self, kind: HeaderKind) {
        let raw = std::mem::take(&mut self.header);
        // Folded lines are stored without their line breaks (the scanner ends lines at LF, CRLF and a
        // lone CR), so the trimmed field is already what `smtp::unfold` would give.
        debug_assert!(!raw.contains(&b'\n') && !raw.contains(&b'\r'));
        let value: &[u8] = raw.trim_ascii();
        match kind {
            HeaderKind::Received if self.chain_closed => {}
            HeaderKind::Received => {
                if let Ok(r) = self.tokens.fill(value) {
                    self.out.chain.push(&r, value);
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
            HeaderKind::Org(_) if self.chain_closed => {}
            HeaderKind::Org(o) => {
                let v = String::from_utf8_lossy(value.trim_ascii()).into_owned();
                let org = &mut self.out.org;
                match o {
                    OrgHeader::Originator if !v.is_empty() => org.originator = Some(v),
                    OrgHeader::AuthSource if !v.is_empty() => org.auth_source = Some(v),
                    OrgHeader::AuthAs => org.auth_internal = v.eq_ignore_ascii_case("Internal"),
                    OrgHeader::FromEntity => {
                        org.hybrid_on_prem = v.eq_ignore_ascii_case("HybridOnPrem")
                    }
                    _ => {}
                }
            }
            HeaderKind::Other => {}
        }
        self.header = raw;
        self.header.clear();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `strip_prefix` without its first-byte shortcut.
    fn strip_prefix_slow(line: &[u8]) -> &[u8] {
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

    proptest::proptest! {
        #[test]
        fn strip_prefix_shortcut_changes_nothing(l in "[ \tSCsc:<>~*Rx2-]{0,8}[ a-z0-9]{0,4}") {
            proptest::prop_assert_eq!(strip_prefix(l.as_bytes()), strip_prefix_slow(l.as_bytes()));
        }
    }

    #[test]
    fn prefixes() {
        assert_eq!(strip_prefix(b"S: 220 mx"), b"220 mx");
        assert_eq!(strip_prefix(b"<-  220 mx"), b"220 mx");
        assert_eq!(strip_prefix(b" -> EHLO x"), b"EHLO x");
        assert_eq!(strip_prefix(b"<<< 250 ok"), b"250 ok");
        assert_eq!(strip_prefix(b"Received: x"), b"Received: x");
    }

    #[test]
    fn era_text_lists_every_set_of_versions() {
        // The reference: the versions joined by ", " with " or " before the last.
        for e in 0..(1u32 << ExVersion::ALL.len()) {
            let e = e as Era;
            let ids: Vec<&str> = era_versions(e).into_iter().map(ExVersion::id).collect();
            let want = match ids.split_last() {
                None => "none".to_string(),
                Some((last, [])) => (*last).to_string(),
                Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            };
            assert_eq!(era_text(e), want);
        }
    }

    #[test]
    fn eras() {
        assert_eq!(era_text(ERA_2013_ON), "2013, 2016, 2019 or SE");
        assert_eq!(era_text(era(&[V2003])), "2003");
    }
}

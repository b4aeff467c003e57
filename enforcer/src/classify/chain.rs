//! The Received chain: which hop is the sending server's. One rule for every product (README, "Which
//! Received hop"):
//!
//! Fields are newest first. A hop *crosses* into another organisation when its `from` host and its `by`
//! host belong to different organisations (see [`Links::crosses`]). Walking down from the newest hop,
//! the hops that do not cross are the receiving side's own; the first hop that crosses is the *entry*:
//! the receiving side took the message from the sending server there. The hops below the entry, down to
//! and including the next hop that crosses (where the sending organisation itself took the message from
//! someone else: a mailing list's author, a forwarder's origin), are the sending organisation's. The
//! newest of them that names its software is the sending server; when the organisation's route passes
//! its own Exchange behind a relay (a gateway, a filter), that Exchange is reported and the relay named
//! in the evidence, because the Exchange build is what enforcement rates. Nothing below the sending
//! organisation and nothing on the receiving side is ever attributed. With no crossing at all the block
//! is one organisation's (a copy from the sender's side): its newest hop decides, with less confidence.
//!
//! With the connecting address known ([`attribute_connecting`]), the rule is tighter: the newest hops
//! written by the server at that address are its own, and only they are attributed.

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use super::build::Build;
use super::scan::{iis_era, Candidate, ERA_2007_ON};
use super::signature::{self, is_exchange_online_host, is_microsoft_host};
use super::{evidence_text, EvidenceItem, EvidenceKind, Product};
use crate::smtp::{ClauseKind, TokensView};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HopKind {
    /// `with Microsoft SMTP Server` / `with mapi` / `with Internet Mail Service` on an on-premises `by`.
    OnPrem,
    /// The same on a Microsoft service `by` (or a 15.20+ build); `with HTTPS` inside Microsoft; the
    /// consumer front ends' `SMTPSVC` stamps.
    Online,
    /// `with Microsoft SMTPSVC(…)`: the IIS SMTP service (Exchange 2000/2003, or plain IIS).
    Iis,
    Other,
}

/// A Received hop as the chain rules read it, borrowed from the header block's [`Chain`].
#[derive(Clone, Debug)]
pub(crate) struct Hop<'a> {
    pub kind: HopKind,
    pub by: Option<&'a str>,
    /// The `from` host: the reverse-DNS name the receiving MTA looked up when it wrote one, else the name
    /// the client gave.
    pub from: Option<&'a str>,
    /// The client address the receiving MTA recorded in the `from` clause.
    pub from_ip: Option<IpAddr>,
    /// Exchange build in `id` (on-premises and online hops), or the IIS version in `SMTPSVC(…)`.
    pub build: Option<Build>,
    /// A product named by the hop's `by` comments, `with` clause or qmail preamble.
    pub hint: &'a Hint,
    /// The field as read (made evidence text only for the hops that become evidence).
    pub text: &'a [u8],
}

/// What the scanner keeps of one hop: [`Hop`] with its host names and text as ranges of the
/// [`Chain`]'s buffers.
#[derive(Clone, Debug)]
struct HopRecord {
    kind: HopKind,
    by: Option<Range<usize>>,
    from: Option<Range<usize>>,
    from_ip: Option<IpAddr>,
    build: Option<Build>,
    hint: Hint,
    text: Range<usize>,
}

/// The Received hops of a header block, newest (top) first. Host names and field texts are kept in two
/// buffers shared by all hops: a hop then costs no allocation of its own (three strings each before),
/// and only the few hops that become evidence are made evidence text.
#[derive(Clone, Debug, Default)]
pub(crate) struct Chain {
    records: Vec<HopRecord>,
    /// Host names, lossy UTF-8.
    names: String,
    /// Field values as read.
    raw: Vec<u8>,
}

impl Chain {
    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes held (to decide whether keeping the buffers for the next header block is worth it).
    pub(crate) fn capacity(&self) -> usize {
        self.names.capacity() + self.raw.capacity() + self.records.capacity() * 128
    }

    pub(crate) fn clear(&mut self) {
        self.records.clear();
        self.names.clear();
        self.raw.clear();
    }

    /// The hops, to be read by the chain rules.
    pub(crate) fn hops(&self) -> Vec<Hop<'_>> {
        self.records
            .iter()
            .map(|r| Hop {
                kind: r.kind,
                by: r.by.clone().map(|n| &self.names[n]),
                from: r.from.clone().map(|n| &self.names[n]),
                from_ip: r.from_ip,
                build: r.build,
                hint: &r.hint,
                text: &self.raw[r.text.clone()],
            })
            .collect()
    }

    /// `h` (a host name) into `names`; where it is.
    fn name(&mut self, h: &[u8]) -> Range<usize> {
        let start = self.names.len();
        // Host names are ASCII: a word-at-a-time test is cheaper than UTF-8 validation on these short
        // strings, and this runs for both hosts of every hop.
        if h.is_ascii() {
            // SAFETY: every byte is ASCII (checked above), and ASCII is valid UTF-8.
            self.names
                .push_str(unsafe { std::str::from_utf8_unchecked(h) });
        } else {
            self.names.push_str(&String::from_utf8_lossy(h));
        }
        start..self.names.len()
    }

    /// Reads one Received field (`r`, read from `raw`) as the next older hop.
    pub(crate) fn push(&mut self, r: &TokensView<'_>, raw: &[u8]) {
        let by = r
            .words(r.clause(ClauseKind::By))
            .next()
            .map(|h| self.name(h));
        let (from, from_ip) = from_clause(r);
        let from = from.map(|h| self.name(h));
        let by_name = by.clone().map(|n| &self.names[n]);
        let (kind, build, hint) = read_hop(r, by_name);
        let start = self.raw.len();
        self.raw.extend_from_slice(raw);
        self.records.push(HopRecord {
            kind,
            by,
            from,
            from_ip,
            build,
            hint,
            text: start..self.raw.len(),
        });
    }
}

/// What the header block says about organisations beyond host names: Exchange's own stamps.
#[derive(Clone, Debug, Default)]
pub(crate) struct OrgSignals {
    /// `X-OriginatorOrg:` (Exchange Online's name for the tenant the message passed).
    pub originator: Option<String>,
    /// `X-MS-Exchange-Organization-AuthSource:` (the server that accepted the message).
    pub auth_source: Option<String>,
    /// `X-MS-Exchange-Organization-AuthAs: Internal`.
    pub auth_internal: bool,
    /// `X-MS-Exchange-CrossTenant-FromEntityHeader: HybridOnPrem`.
    pub hybrid_on_prem: bool,
}

/// An address as MTAs write it: `[192.0.2.1]`, `[IPv6:2001:db8::1]`, `192.0.2.1`, `[192.0.2.1]:25`,
/// `fe80::1%12`, `[::ffff:192.0.2.1]` (read as IPv4).
pub(crate) fn parse_addr(w: &[u8]) -> Option<IpAddr> {
    // Worked on bytes and rejected early: this runs for several words of every `from` clause, and most
    // of them are names.
    let mut s = w;
    while let [b'"' | b',', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b'"' | b','] = s {
        s = rest;
    }
    let bracketed = s.first() == Some(&b'[');
    if bracketed {
        s = &s[1..];
    }
    if s.len() >= 5 && (s[..5] == *b"IPv6:" || s[..5] == *b"ipv6:") {
        s = &s[5..];
    }
    // One walk over the address bytes, noting a colon on the way. Only a zone id (`%12`) may follow
    // the address, or the closing bracket and whatever comes after it (`[192.0.2.1]:25`).
    let mut end = 0;
    let mut colon = false;
    while let Some(&b) = s.get(end) {
        if b == b':' {
            colon = true;
        } else if !(b.is_ascii_hexdigit() || b == b'.') {
            break;
        }
        end += 1;
    }
    let ends_well = match s.get(end) {
        None | Some(b'%') => true,
        Some(b']') => bracketed,
        Some(_) => false,
    };
    if end == 0 || !ends_well {
        return None;
    }
    let s = &s[..end];
    if !colon {
        return dotted_quad(s).map(IpAddr::V4);
    }
    ipv6(s).map(|a| IpAddr::V6(a).to_canonical())
}

/// An IPv6 address read the way the standard library reads it (up to eight groups of one to four hex
/// digits, at most one `::` standing for at least one zero group, an IPv4 address as the last two
/// groups), on bytes and in one pass: Exchange's internal hops record one in most chains, and the
/// standard parser costs several times this.
fn ipv6(s: &[u8]) -> Option<Ipv6Addr> {
    let mut head = [0u16; 8];
    let mut pos = 0;
    let (head_n, head_v4) = ipv6_groups(s, &mut pos, &mut head);
    if head_n == 8 {
        return (pos == s.len()).then(|| Ipv6Addr::from(head));
    }
    // An IPv4 part may only end the address.
    if head_v4 || s.get(pos..pos + 2) != Some(b"::") {
        return None;
    }
    pos += 2;
    let mut tail = [0u16; 7];
    let (tail_n, _) = ipv6_groups(s, &mut pos, &mut tail[..7 - head_n]);
    if pos != s.len() {
        return None;
    }
    head[8 - tail_n..].copy_from_slice(&tail[..tail_n]);
    Some(Ipv6Addr::from(head))
}

/// Up to `out.len()` `:`-separated groups from `pos` (which is left after the last one read): how many
/// were read and whether the last two were an IPv4 address.
fn ipv6_groups(s: &[u8], pos: &mut usize, out: &mut [u16]) -> (usize, bool) {
    let limit = out.len();
    for i in 0..limit {
        let start = if i == 0 {
            *pos
        } else if s.get(*pos) == Some(&b':') {
            *pos + 1
        } else {
            return (i, false);
        };
        // Two groups or more still to fill: an IPv4 address may stand for the last two.
        if i + 1 < limit {
            if let Some((v4, end)) = ipv4_prefix(s, start) {
                let [a, b, c, d] = v4.octets();
                out[i] = u16::from_be_bytes([a, b]);
                out[i + 1] = u16::from_be_bytes([c, d]);
                *pos = end;
                return (i + 2, true);
            }
        }
        let mut n = 0;
        let mut v = 0u16;
        while let Some(d) = s.get(start + n).and_then(|b| char::from(*b).to_digit(16)) {
            if n == 4 {
                return (i, false);
            }
            v = v << 4 | d as u16;
            n += 1;
        }
        if n == 0 {
            return (i, false);
        }
        out[i] = v;
        *pos = start + n;
    }
    (limit, false)
}

/// A dotted quad at `start` with whatever follows it (see [`dotted_quad`]): the address and where it ends.
fn ipv4_prefix(s: &[u8], start: usize) -> Option<(Ipv4Addr, usize)> {
    let mut octets = [0u8; 4];
    let mut pos = start;
    for (k, octet) in octets.iter_mut().enumerate() {
        if k > 0 {
            if s.get(pos) != Some(&b'.') {
                return None;
            }
            pos += 1;
        }
        let digits = s[pos.min(s.len())..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 || digits > 3 || (digits > 1 && s[pos] == b'0') {
            return None;
        }
        let n = s[pos..pos + digits]
            .iter()
            .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        *octet = u8::try_from(n).ok()?;
        pos += digits;
    }
    Some((Ipv4Addr::from(octets), pos))
}

/// `192.0.2.1` read the way the standard library reads it (four decimal octets of one to three digits,
/// no leading zeros), in one pass: nearly every address in a Received chain is one of these.
fn dotted_quad(s: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut i = 0;
    let mut n: u16 = 0;
    let mut digits = 0;
    for &b in s {
        if b == b'.' {
            if digits == 0 || i == 3 {
                return None;
            }
            octets[i] = u8::try_from(n).ok()?;
            i += 1;
            n = 0;
            digits = 0;
        } else if b.is_ascii_digit() && digits < 3 && !(digits == 1 && n == 0) {
            n = n * 10 + u16::from(b - b'0');
            digits += 1;
        } else {
            return None;
        }
    }
    if digits == 0 || i != 3 {
        return None;
    }
    octets[3] = u8::try_from(n).ok()?;
    Some(Ipv4Addr::from(octets))
}

/// Private, loopback, link-local, shared (CGNAT) and unique-local addresses: one site's own network.
pub(crate) fn is_internal(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(a) => {
            a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || (a.octets()[0] == 100 && (a.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(a) => {
            a.is_loopback()
                || a.is_unspecified()
                || a.is_unique_local()
                || a.is_unicast_link_local()
        }
    }
}

/// Who handed the message over, as the `from` clause records it: (name, address). The name is the
/// reverse-DNS name in the comment when there is one (`from helo (rdns [addr])`, Exim's `from rdns
/// ([addr] helo=…)`), else the name the client gave.
fn from_clause<'a>(r: &TokensView<'a>) -> (Option<&'a [u8]>, Option<IpAddr>) {
    let c = r.clause(ClauseKind::From);
    let mut words = r.words(c);
    let first = words.next();
    let first_ip = first.and_then(parse_addr);
    let mut ip = first_ip;
    let mut rdns: Option<&[u8]> = None;
    for comment in r.comments(c) {
        let mut words = blank_separated(comment);
        let Some(head) = words.next() else {
            continue;
        };
        if let Some(a) = parse_addr(head) {
            ip.get_or_insert(a);
            continue;
        }
        // `(rdns [addr])`: a name is the looked-up one only when an address follows it.
        if let Some(a) = words.next().and_then(parse_addr) {
            ip.get_or_insert(a);
            if rdns.is_none()
                && head.contains(&b'.')
                && !head.eq_ignore_ascii_case(b"unknown")
                && head.first().is_some_and(u8::is_ascii_alphanumeric)
            {
                rdns = Some(head);
            }
        }
    }
    let name = rdns.or(first.filter(|w| first_ip.is_none() && !w.eq_ignore_ascii_case(b"unknown")));
    (name, ip)
}

/// The words of a comment, split at spaces and tabs (a position search per word, not a test per byte
/// through an adapter: this runs for every comment of every `from` clause).
fn blank_separated(mut rest: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let start = rest.iter().position(|b| !matches!(b, b' ' | b'\t'))?;
        let r = &rest[start..];
        let n = r
            .iter()
            .position(|b| matches!(b, b' ' | b'\t'))
            .unwrap_or(r.len());
        rest = &r[n..];
        Some(&r[..n])
    })
}

/// A product named by a hop that is not Microsoft's, with its version when it says one.
type Hint = Option<(Product, Option<String>)>;

/// What a hop's `with` and `id` clauses and comments say: the kind of stamp, its build, and the product
/// a non-Microsoft hop names. `by` is the hop's `by` host.
fn read_hop(r: &TokensView<'_>, by: Option<&str>) -> (HopKind, Option<Build>, Hint) {
    let with = r.clause(ClauseKind::With);
    let with_words = r.words(with);
    let with_first = with_words.clone().next().unwrap_or_default();
    let microsoft = with_first.eq_ignore_ascii_case(b"Microsoft");
    let iis = microsoft
        && with_words
            .clone()
            .any(|w| w.len() >= 7 && w[..7].eq_ignore_ascii_case(b"SMTPSVC"));
    let ms_smtp = microsoft && !iis && with_words.clone().any(|w| w.eq_ignore_ascii_case(b"SMTP"));
    let mapi = with_first.eq_ignore_ascii_case(b"mapi") && with_words.clone().count() == 1;
    let online_host = by.is_some_and(|h| is_exchange_online_host(h.as_bytes()));
    let ms_service_by = online_host || by.is_some_and(|h| is_microsoft_host(h.as_bytes()));
    // Exchange Online's internal HTTP proxy hops.
    let https = ms_service_by
        && (with_first.eq_ignore_ascii_case(b"HTTPS") || with_first.eq_ignore_ascii_case(b"HTTP"));
    // Exchange 5.5: `by host with Internet Mail Service (5.5.2653.19)`.
    let ims = with_first.eq_ignore_ascii_case(b"Internet")
        && with_words
            .clone()
            .nth(2)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"Service"));
    let id_build = r
        .words(r.clause(ClauseKind::Id))
        .next()
        .and_then(Build::parse)
        .filter(|b| (4..=15).contains(&b.major()) && b.len() >= 3);
    let (kind, build) = if iis {
        let v = r
            .comments(with)
            .next()
            .and_then(|c| Build::parse(c.trim_ascii()));
        // Outlook.com/Hotmail front ends stamp SMTPSVC: Microsoft's service, never an IIS server.
        if ms_service_by {
            (HopKind::Online, None)
        } else {
            (HopKind::Iis, v)
        }
    } else if ms_smtp || mapi {
        let online = online_host
            || ms_service_by
            || id_build.is_some_and(|b| b.major() == 15 && b.minor() >= 20);
        (
            if online {
                HopKind::Online
            } else {
                HopKind::OnPrem
            },
            id_build,
        )
    } else if https {
        (HopKind::Online, None)
    } else if ims {
        let v = r
            .comments(with)
            .next()
            .and_then(|c| Build::parse(c.trim_ascii()))
            .filter(|b| b.major() == 5 && b.len() >= 3);
        (HopKind::OnPrem, v)
    } else {
        // Exchange 5.5's IMS as the receiving side of an SMTP hop: `with SMTP (Microsoft Exchange
        // Internet Mail Service Version 5.5.2653.13)`.
        // Only text that says `Microsoft` can hold a Microsoft build: most comments (`(TLS1.3)`, `(Exim
        // 4.96)`) are turned away by one compare per byte before the product scan.
        let says_microsoft = |c: &&[u8]| {
            c.windows(9)
                .any(|w| w[0] | 0x20 == b'm' && w.eq_ignore_ascii_case(b"microsoft"))
        };
        let ex55 = r
            .comments(with)
            .filter(says_microsoft)
            .find_map(|c| match signature::scan(c) {
                Some(signature::Hit {
                    ms: Some(signature::MsSignal::ExchangeBuild(b)),
                    ..
                }) => Some(b),
                _ => None,
            });
        match ex55 {
            Some(b) => (HopKind::OnPrem, Some(b)),
            None => (HopKind::Other, None),
        }
    };
    let mut hint = None;
    if kind == HopKind::Other {
        for t in r
            .comments(r.clause(ClauseKind::By))
            .chain(with_words)
            .chain(r.comments(with))
            .chain(r.preamble())
        {
            if let Some(h) = signature::scan(t).filter(|h| h.ms.is_none()) {
                hint = Some((h.product, h.version));
                break;
            }
            if let Some(v) = signature::sendmail_by_comment(t) {
                hint = Some((Product::Sendmail, Some(v)));
                break;
            }
        }
    }
    (kind, build, hint)
}

fn is_ms(h: &Hop<'_>) -> bool {
    h.kind != HopKind::Other
}

/// Which organisation a host belongs to: Microsoft's service hosts (Exchange Online, EOP, Outlook.com)
/// are one; any other name is its registrable domain. Single-label names and address literals say
/// nothing.
fn org_key(host: &str) -> Option<&str> {
    if is_microsoft_host(host.as_bytes()) {
        return Some("microsoft");
    }
    org_domain(host)
}

/// How organisation names are tied together in this header block.
pub(crate) struct Links<'a> {
    /// Organisation keys that Exchange's own stamps say are one organisation.
    joined: Vec<&'a str>,
    hybrid: bool,
}

impl<'a> Links<'a> {
    pub(crate) fn new(s: &'a OrgSignals) -> Self {
        let mut joined = Vec::new();
        // X-OriginatorOrg is written by Exchange Online for the tenant the message passed: the tenant's
        // own domains and Microsoft's hosts are one organisation for this message.
        if let Some(o) = s.originator.as_deref().and_then(org_domain) {
            joined.push(o);
            joined.push("microsoft");
        }
        // AuthAs: Internal means the Exchange that accepted the message took its sender as internal.
        if s.auth_internal {
            if let Some(a) = s.auth_source.as_deref().and_then(org_key) {
                if !joined.is_empty() {
                    joined.push(a);
                }
            }
        }
        Links {
            joined,
            hybrid: s.hybrid_on_prem,
        }
    }

    fn same(&self, a: &str, b: &str) -> bool {
        a.eq_ignore_ascii_case(b)
            || (self.joined.iter().any(|j| j.eq_ignore_ascii_case(a))
                && self.joined.iter().any(|j| j.eq_ignore_ascii_case(b)))
    }

    /// Whether hop `h` hands the message from one organisation to another. Not a hand-off: a `from`
    /// address in a private, loopback or link-local range; the same registrable domain on both sides;
    /// two Microsoft service hosts; organisations tied by Exchange's stamps; a Microsoft-stamped hop
    /// between the tenant and its on-premises servers when the message says `HybridOnPrem`. A hop whose
    /// `by` has no usable name, or that names no `from` at all, is not taken as a hand-off either.
    pub(crate) fn crosses(&self, h: &Hop<'_>) -> bool {
        if h.from_ip.is_some_and(is_internal) {
            return false;
        }
        let Some(by) = h.by.and_then(org_key) else {
            return false;
        };
        match h.from.and_then(org_key) {
            Some(from) => {
                if self.same(from, by) {
                    return false;
                }
                let microsoft_side = from == "microsoft" || by == "microsoft";
                !(self.hybrid && microsoft_side && is_ms(h))
            }
            // A public address with no usable name, handed to a named host.
            None => h.from_ip.is_some(),
        }
    }
}

pub(crate) fn org_domain(host: &str) -> Option<&str> {
    let host = host.trim_end_matches('.');
    // Only hex digits, dots and colons can make an address: skip the parse for names.
    let may_be_ip = host
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b':');
    if host.starts_with('[') || (may_be_ip && host.parse::<std::net::IpAddr>().is_ok()) {
        return None;
    }
    // The last two labels, or three under a two-letter country code with a short second label
    // (example.co.uk, example.com.au). Found by walking back over the bytes: this runs for both hosts
    // of every hop, several times per chain.
    let b = host.as_bytes();
    let dot_before = |end: usize| b[..end].iter().rposition(|c| *c == b'.');
    let d1 = dot_before(b.len())?;
    let last = b.len() - d1 - 1;
    let cut = match dot_before(d1) {
        Some(d2) if d1 - d2 - 1 <= 3 && last == 2 => {
            let d3 = dot_before(d2).map_or(0, |d| d + 1);
            b.len() - d3
        }
        Some(d2) => b.len() - d2 - 1,
        None => b.len(),
    };
    Some(&host[host.len() - cut..])
}

fn name<'a>(h: &Option<&'a str>) -> &'a str {
    h.unwrap_or("an unnamed host")
}

/// The sending organisation's part of the chain (newest first), per the module's rule.
struct Route {
    /// Index of the entry hop (the receiving side's hop that took the message from outside).
    entry: Option<usize>,
    /// The sending organisation's hops: `hops[start..end]`.
    start: usize,
    end: usize,
}

fn route(hops: &[Hop<'_>], links: &Links<'_>) -> Route {
    let Some(entry) = hops.iter().position(|h| links.crosses(h)) else {
        return Route {
            entry: None,
            start: 0,
            end: hops.len(),
        };
    };
    // Exchange Online relays outward only for its own tenant: below the entry, a hop into Microsoft's
    // service is the tenant's on-premises server handing over (hybrid), not another organisation.
    let into_microsoft = |h: &Hop<'_>| h.by.is_some_and(|b| is_microsoft_host(b.as_bytes()));
    let end = hops[entry + 1..]
        .iter()
        .position(|h| links.crosses(h) && !into_microsoft(h))
        .map_or(hops.len(), |i| entry + 1 + i + 1);
    Route {
        entry: Some(entry),
        start: entry + 1,
        end,
    }
}

/// Candidates from the header block's chain, plus notes on the hops that were not attributed.
pub(crate) fn attribute(hops: &[Hop<'_>], signals: &OrgSignals) -> Vec<Candidate> {
    let mut out = Vec::with_capacity(hops.len() + 1);
    if hops.is_empty() {
        return out;
    }
    let links = Links::new(signals);
    let r = route(hops, &links);
    let receiving_end = r.entry.map_or(0, |e| e + 1);
    for h in &hops[..receiving_end] {
        if is_ms(h) {
            out.push(note(
                h,
                format!(
                    "Microsoft hop by {} belongs to the receiving side: not attributed",
                    name(&h.by)
                ),
            ));
        }
    }
    let entry = r.entry.map(|e| &hops[e]);
    let why_buf = entry.map(|e| {
        let mut b = String::with_capacity(128);
        let _ = write!(
            b,
            "the sending organisation's newest hop below the hand-off to {} (the receiving side)",
            name(&e.by)
        );
        b
    });
    let why: &str = why_buf.as_deref().unwrap_or(
        "no hand-off between organisations is visible; the newest hop is taken as the sender's own",
    );
    let penalty = if r.entry.is_some() { 0.0 } else { 0.15 };
    let sending = &hops[r.start..r.end];
    let newest_named = sending.iter().position(|h| is_ms(h) || h.hint.is_some());
    let newest_ms = sending.iter().position(is_ms);
    match (newest_named, newest_ms) {
        (_, Some(m)) => {
            let h = &sending[m];
            let mut c = exchange_candidate(h, &sending[m + 1..], why, penalty);
            if m > 0 {
                let relays: Vec<String> = sending[..m]
                    .iter()
                    .map(|x| match &x.hint {
                        Some((p, _)) => format!("{} ({})", name(&x.by), p.name()),
                        None => name(&x.by).to_string(),
                    })
                    .collect();
                let _ = write!(
                    c.evidence.finding,
                    "; the organisation relays it out through {}",
                    relays.join(", ")
                );
            }
            out.push(c);
            for x in sending[m + 1..]
                .iter()
                .filter(|x| x.build.is_some() && is_ms(x))
            {
                if let Some(b) = x.build.filter(|_| x.kind != HopKind::Iis) {
                    out.push(note(x, format!("internal hop by {} (build {b}) before the outbound one: not attributed", name(&x.by))));
                }
            }
        }
        (Some(n), None) => {
            let h = &sending[n];
            if let Some((p, v)) = &h.hint {
                let weight = if n == 0 { 0.6 } else { 0.5 } - penalty;
                let ver = v.as_ref().map(|v| format!(" {v}")).unwrap_or_default();
                let f = format!("{} names {}{ver}; {why}", name(&h.by), p.name());
                let mut c = candidate(h, *p, None, 0, weight, f);
                c.version = v.clone();
                out.push(c);
            }
        }
        (None, None) => {
            // Nothing the sending organisation wrote names its software; Exchange Online is still
            // known from the name the receiving side recorded.
            if let Some(f) = entry
                .and_then(|e| e.from)
                .filter(|f| is_exchange_online_host(f.as_bytes()))
            {
                let e = entry.expect("entry is set when its from is");
                let msg = format!(
                    "the receiving side ({}) took the message from {f}, an Exchange Online host",
                    name(&e.by)
                );
                out.push(candidate(e, Product::ExchangeOnline, None, 0, 0.75, msg));
            }
        }
    }
    for x in hops[r.end..].iter().filter(|x| is_ms(x)) {
        out.push(note(x, format!("Microsoft hop by {} is below the sending organisation (it received the message from another one): not attributed", name(&x.by))));
    }
    out
}

/// The first label of a host, which names the machine whatever domain it is written with.
fn machine<'a>(h: &Hop<'a>) -> Option<&'a str> {
    h.by.map(|b| b.split('.').next().unwrap_or(b))
}

/// Candidates when the connecting server's address is known: the newest Received fields written by that
/// server are its own (see the module's rule). `hops` newest first.
pub(crate) fn attribute_connecting(
    hops: &[Hop<'_>],
    signals: &OrgSignals,
    ip: IpAddr,
) -> Vec<Candidate> {
    let mut out = Vec::new();
    let ip = ip.to_canonical();
    let links = Links::new(signals);
    // Our own MTA's stamp names the connecting address in its `from` clause: everything down to it is
    // ours. It is looked for among our own hops and the first hop that crosses into our organisation.
    let ours = hops
        .iter()
        .position(|h| h.from_ip == Some(ip))
        .filter(|&k| !hops[..k].iter().any(|h| links.crosses(h)));
    let start = ours.map_or(0, |k| k + 1);
    for h in hops[..start].iter().filter(|h| is_ms(h)) {
        out.push(note(
            h,
            format!(
                "Microsoft hop by {} is the receiving side's: not attributed to {ip}",
                name(&h.by)
            ),
        ));
    }
    let Some(first) = hops.get(start) else {
        return out;
    };
    let own_len = hops[start..]
        .iter()
        .take_while(|h| {
            machine(h)
                .zip(machine(first))
                .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b))
        })
        .count()
        .max(1);
    let own = &hops[start..start + own_len];
    let why = match ours {
        Some(k) => format!(
            "written by the connecting server {ip} (the hop above, by {}, records receiving from it)",
            name(&hops[k].by)
        ),
        None => format!("the newest Received field, written by the connecting server {ip}"),
    };
    if let Some(m) = own.iter().position(is_ms) {
        out.push(exchange_candidate(&own[m], &own[m + 1..], &why, 0.0));
    } else if let Some((p, v)) = &first.hint {
        let ver = v.as_ref().map(|v| format!(" {v}")).unwrap_or_default();
        let f = format!("{} names {}{ver}; {why}", name(&first.by), p.name());
        let mut c = candidate(first, *p, None, 0, 0.6, f);
        c.version = v.clone();
        out.push(c);
    }
    for x in hops[start + own_len..].iter().filter(|x| is_ms(x)) {
        let b = x.build.map(|b| format!(" (build {b})")).unwrap_or_default();
        out.push(note(x, format!("Microsoft hop by {}{b} was written before the message reached the connecting server {ip}: not attributed to it", name(&x.by))));
    }
    out
}

/// The candidate for a Microsoft hop `h` chosen as the sending server; `older` are the hops below it
/// (listed when Exchange Online relays for on-premises servers).
fn exchange_candidate(h: &Hop<'_>, older: &[Hop<'_>], why: &str, penalty: f64) -> Candidate {
    // Findings are written into strings sized up front: formatting them is a large part of classifying
    // a header block.
    let mut f = String::with_capacity(why.len() + 96);
    match h.kind {
        HopKind::Online => {
            let earlier: Vec<String> = older
                .iter()
                .filter(|x| x.kind == HopKind::OnPrem)
                .filter_map(|x| x.build.map(|b| format!("{} ({b})", name(&x.by))))
                .collect();
            let _ = write!(
                f,
                "{} is Microsoft's service (Exchange Online); {why}",
                name(&h.by)
            );
            if !earlier.is_empty() {
                let _ = write!(
                    f,
                    "; on-premises Exchange earlier in the route relays through it: {}",
                    earlier.join(", ")
                );
            }
            candidate(h, Product::ExchangeOnline, h.build, 0, 0.9 - penalty, f)
        }
        HopKind::OnPrem => match h.build {
            Some(b) => {
                let _ = write!(f, "{} runs Exchange build {b}; {why}", name(&h.by));
                candidate(h, Product::Exchange, Some(b), 0, 0.95 - penalty, f)
            }
            None => {
                let _ = write!(
                    f,
                    "{} is Exchange 2007 or later (no build in `id`); {why}",
                    name(&h.by)
                );
                candidate(h, Product::Exchange, None, ERA_2007_ON, 0.7 - penalty, f)
            }
        },
        HopKind::Iis | HopKind::Other => {
            let v = h.build.map(|b| format!(" {b}")).unwrap_or_default();
            let _ = write!(
                f,
                "{} runs the Windows IIS SMTP service{v} (Exchange 2000/2003 or plain IIS); {why}",
                name(&h.by)
            );
            let mut c = candidate(
                h,
                Product::IisSmtp,
                h.build,
                iis_era(h.build),
                0.7 - penalty,
                f,
            );
            c.version = h.build.map(|b| b.to_string());
            c
        }
    }
}

fn candidate(
    h: &Hop<'_>,
    product: Product,
    build: Option<Build>,
    era: u16,
    weight: f64,
    finding: String,
) -> Candidate {
    Candidate {
        product,
        version: None,
        build,
        era,
        weight,
        evidence: EvidenceItem {
            kind: EvidenceKind::Received,
            text: evidence_text(h.text),
            finding,
        },
    }
}

/// Evidence that explains a decision without voting (weight 0).
fn note(h: &Hop<'_>, finding: String) -> Candidate {
    candidate(h, Product::Unknown, None, 0, 0.0, finding)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    /// The first, allocating version: the reference `org_domain` must keep agreeing with.
    fn reference(host: &str) -> Option<&str> {
        let host = host.trim_end_matches('.');
        if host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok() {
            return None;
        }
        let labels: Vec<&str> = host.rsplitn(4, '.').collect();
        let keep = match labels.len() {
            0..=1 => return None,
            2 => 2,
            _ if labels[1].len() <= 3 && labels[0].len() == 2 => 3,
            _ => 2,
        };
        let cut: usize = labels[..keep].iter().map(|l| l.len() + 1).sum::<usize>() - 1;
        Some(&host[host.len() - cut..])
    }

    proptest! {
        #[test]
        fn org_domain_matches_the_reference(h in "[a-f0-9:.\\[\\]xyz]{0,20}") {
            prop_assert_eq!(super::org_domain(&h), reference(&h));
        }

        #[test]
        fn org_domain_of_host_names_matches_the_reference(h in "([a-zA-Z0-9-]{0,5}\\.){0,5}[a-z]{0,3}\\.{0,2}") {
            prop_assert_eq!(super::org_domain(&h), reference(&h));
        }
    }

    /// `parse_addr` as first written (standard-library parse): the reference the one-walk version keeps.
    fn reference_parse_addr(w: &[u8]) -> Option<std::net::IpAddr> {
        let mut s = w;
        while let [b'"' | b',', rest @ ..] = s {
            s = rest;
        }
        while let [rest @ .., b'"' | b','] = s {
            s = rest;
        }
        if let [b'[', inner @ ..] = s {
            s = &inner[..inner.iter().position(|b| *b == b']').unwrap_or(inner.len())];
        }
        if s.len() >= 5 && (s[..5] == *b"IPv6:" || s[..5] == *b"ipv6:") {
            s = &s[5..];
        }
        let addr_byte = |b: &u8| b.is_ascii_hexdigit() || *b == b'.' || *b == b':';
        if !s.first().is_some_and(addr_byte) {
            return None;
        }
        let end = s.iter().position(|b| !addr_byte(b)).unwrap_or(s.len());
        if end < s.len() && s[end] != b'%' {
            return None;
        }
        std::str::from_utf8(&s[..end])
            .ok()?
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|a| a.to_canonical())
    }

    proptest! {
        #[test]
        fn parse_addr_matches_the_reference(w in prop_oneof![
            "[\\[\\]\"',%:.0-9a-fA-FIPvx ]{0,24}",
            "[\"]?\\[?(IPv6:)?[0-9a-f:.]{0,20}(%[0-9a-z]{0,3})?\\]?(:25)?[,\"]?",
        ]) {
            prop_assert_eq!(super::parse_addr(w.as_bytes()), reference_parse_addr(w.as_bytes()), "{}", w);
        }

        #[test]
        fn comment_words_split_like_split_and_filter(c in "[ \ta-z.\\[\\]0-9]{0,30}") {
            let want: Vec<&[u8]> = c.as_bytes().split(|b| matches!(b, b' ' | b'\t')).filter(|w| !w.is_empty()).collect();
            prop_assert_eq!(super::blank_separated(c.as_bytes()).collect::<Vec<_>>(), want);
        }
    }

    #[test]
    fn ipv6_edge_cases_read_as_the_standard_library_reads_them() {
        for s in [
            "::",
            "::1",
            "1::",
            "fe80::1",
            "2603:10a6:20b:1::5",
            "::ffff:192.0.2.1",
            "::1.2.3.4",
            "1:2:3:4:5:6:1.2.3.4",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7::8",
            ":::",
            "1::2::3",
            "12345::",
            "::1.2.3.04",
            "1.2.3.4::",
            "::1.2.3",
            "::1.2.3.4.5",
            "::256.1.1.1",
            "1:2:3:4:5:6:7:1.2.3.4",
            ":1::",
            "1:",
            "",
            "FFFF::ABCD",
            "0000:0000::00000",
            "::0.0.0.0",
            "1:2:3:4:5:6::1.2.3.4",
        ] {
            assert_eq!(
                super::ipv6(s.as_bytes()),
                s.parse::<std::net::Ipv6Addr>().ok(),
                "{s}"
            );
        }
    }

    proptest! {
        #[test]
        fn dotted_quads_read_as_the_standard_library_reads_them(s in "[0-9.]{0,16}") {
            let std = s.parse::<std::net::Ipv4Addr>().ok();
            prop_assert_eq!(super::dotted_quad(s.as_bytes()), std);
        }

        #[test]
        fn ipv6_reads_as_the_standard_library_reads_it(s in prop_oneof![
            "[0-9a-fA-F:.]{0,40}",
            "(([0-9a-fA-F]{0,5}|[0-9]{1,4}(\\.[0-9]{1,4}){3}):{1,3}){0,9}([0-9a-fA-F]{0,5}|[0-9]{1,3}(\\.[0-9]{1,3}){2,4})",
        ]) {
            let std = s.parse::<std::net::Ipv6Addr>().ok();
            prop_assert_eq!(super::ipv6(s.as_bytes()), std, "{}", s);
        }

        #[test]
        fn every_ipv6_address_reads_back(a in any::<[u16; 8]>(), zeros in 0usize..8, at in 0usize..8) {
            // Runs of zeros, so that the `::` forms are written too.
            let mut a = a;
            for g in a.iter_mut().skip(at).take(zeros) {
                *g = 0;
            }
            let ip = std::net::Ipv6Addr::from(a);
            for text in [ip.to_string(), format!("{ip:?}"), format!("{:x}:{:x}:{:x}:{:x}:{:x}:{:x}:{:x}:{:x}", a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7])] {
                prop_assert_eq!(super::ipv6(text.as_bytes()), Some(ip), "{}", text);
                prop_assert_eq!(
                    super::parse_addr(format!("[IPv6:{text}]").as_bytes()),
                    Some(std::net::IpAddr::V6(ip).to_canonical())
                );
            }
        }

        #[test]
        fn every_ipv4_address_reads_back(a in any::<[u8; 4]>()) {
            let ip = std::net::Ipv4Addr::from(a);
            prop_assert_eq!(super::parse_addr(format!("[{ip}]").as_bytes()), Some(std::net::IpAddr::V4(ip)));
        }
    }

    #[test]
    fn addresses_as_mtas_write_them() {
        use super::parse_addr;
        let a = |s: &str| parse_addr(s.as_bytes()).map(|a| a.to_string());
        assert_eq!(a("[192.0.2.1]").as_deref(), Some("192.0.2.1"));
        assert_eq!(a("[192.0.2.1]:25").as_deref(), Some("192.0.2.1"));
        assert_eq!(a("[IPv6:2001:db8::1]").as_deref(), Some("2001:db8::1"));
        assert_eq!(a("[fe80::1%12]").as_deref(), Some("fe80::1"));
        assert_eq!(a("[::ffff:192.0.2.9]").as_deref(), Some("192.0.2.9"));
        assert_eq!(a("10.0.0.1").as_deref(), Some("10.0.0.1"));
        assert_eq!(a("mail.example.com"), None);
        assert_eq!(a("cafe"), None);
        assert!(super::is_internal("10.1.2.3".parse().unwrap()));
        assert!(super::is_internal("fd00::1".parse().unwrap()));
        assert!(super::is_internal("100.64.0.1".parse().unwrap()));
        assert!(!super::is_internal("203.0.113.5".parse().unwrap()));
    }
}

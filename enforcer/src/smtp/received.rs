//! `Received:` field values (RFC 5321 §4.4 time stamp lines, plus the forms real MTAs write).
//!
//! The grammar in practice is looser than the RFC: Exchange writes multi-word protocols (`with Microsoft
//! SMTP Server (version=TLS1_2, cipher=…) id 15.1.2507.39 via Frontend Transport`), Exim puts extra words
//! after `with` (`with esmtps (TLS1.3) tls TLS_AES_256_GCM_SHA384 (Exim 4.96)`), qmail starts with a bare
//! comment. So a value is read as a sequence of clauses: a clause keyword (`from`, `by`, `via`, `with`,
//! `id`, `for`) followed by the words and comments up to the next keyword, then an optional `; date`.

use nom::IResult;

use super::{DecodeError, Item};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClauseKind {
    From,
    By,
    Via,
    With,
    Id,
    For,
}

impl ClauseKind {
    fn keyword(self) -> &'static str {
        match self {
            ClauseKind::From => "from",
            ClauseKind::By => "by",
            ClauseKind::Via => "via",
            ClauseKind::With => "with",
            ClauseKind::Id => "id",
            ClauseKind::For => "for",
        }
    }

    fn of(word: &[u8]) -> Option<Self> {
        // This runs for every word of every Received field, and nearly all of them are no keyword: the
        // word, two to four bytes, is packed into one number and compared whole (see [`packed`]).
        if !(2..=4).contains(&word.len()) {
            return None;
        }
        const BY: u32 = packed(b"by");
        const ID: u32 = packed(b"id");
        const VIA: u32 = packed(b"via");
        const FOR: u32 = packed(b"for");
        const FROM: u32 = packed(b"from");
        const WITH: u32 = packed(b"with");
        match packed(word) {
            BY => Some(ClauseKind::By),
            ID => Some(ClauseKind::Id),
            VIA => Some(ClauseKind::Via),
            FOR => Some(ClauseKind::For),
            FROM => Some(ClauseKind::From),
            WITH => Some(ClauseKind::With),
            _ => None,
        }
    }
}

/// Up to four bytes as one number, each ORed with 0x20. A byte ORed with 0x20 is a given lower-case
/// letter only when it is that letter in either case, so for the (all-letter) keywords equal numbers
/// are an ASCII-case-insensitive match; and the first byte ORed with 0x20 is never 0, so words of
/// different lengths never pack alike.
const fn packed(w: &[u8]) -> u32 {
    let mut n = 0;
    let mut i = 0;
    while i < w.len() {
        n = n << 8 | (w[i] | 0x20) as u32;
        i += 1;
    }
    n
}

/// One clause: its words (`Microsoft`, `SMTP`, `Server`) and its comments without the outer parentheses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clause<'a> {
    pub kind: ClauseKind,
    pub words: Vec<&'a [u8]>,
    pub comments: Vec<&'a [u8]>,
}

impl<'a> Clause<'a> {
    /// The first word (host name, protocol, id), if any.
    pub fn first(&self) -> Option<&'a [u8]> {
        self.words.first().copied()
    }

    /// All words joined by one space (lossy UTF-8).
    pub fn text(&self) -> String {
        let mut s = String::new();
        for w in &self.words {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(&String::from_utf8_lossy(w));
        }
        s
    }
}

/// A parsed `Received:` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received<'a> {
    /// Words and comments before the first clause (qmail's `(qmail 1234 invoked from network)`).
    pub preamble: Vec<&'a [u8]>,
    pub clauses: Vec<Clause<'a>>,
    /// The date-time after the `;`, trimmed.
    pub date: Option<&'a [u8]>,
}

impl<'a> Received<'a> {
    pub fn clause(&self, kind: ClauseKind) -> Option<&Clause<'a>> {
        self.clauses.iter().find(|c| c.kind == kind)
    }

    /// The value as written by [`Received::render`]: preamble, clauses (words, then comments), `; date`.
    pub fn render(&self) -> Vec<u8> {
        let mut parts: Vec<Vec<u8>> = Vec::new();
        for p in &self.preamble {
            parts.push(p.to_vec());
        }
        for c in &self.clauses {
            parts.push(c.kind.keyword().as_bytes().to_vec());
            parts.extend(c.words.iter().map(|w| w.to_vec()));
            for cm in &c.comments {
                let mut v = b"(".to_vec();
                v.extend_from_slice(cm);
                v.push(b')');
                parts.push(v);
            }
        }
        let mut out = parts.join(&b' ');
        if let Some(d) = self.date {
            out.extend_from_slice(b"; ");
            out.extend_from_slice(d);
        }
        out
    }
}

/// Parses an unfolded `Received:` value (see [`super::unfold`]). Errors: an empty value, or a comment
/// whose `(` is never closed.
pub fn parse_received(value: &[u8]) -> Result<Received<'_>, DecodeError> {
    let mut r = Received {
        preamble: Vec::new(),
        // Real values have up to six clauses (from, by, via, with, id, for): one allocation.
        clauses: Vec::with_capacity(6),
        date: None,
    };
    tokenize(value, |t| match t {
        Token::Clause(kind) => r.clauses.push(Clause {
            kind,
            words: Vec::new(),
            comments: Vec::new(),
        }),
        Token::Word(w) => match r.clauses.last_mut() {
            Some(c) => c.words.push(w),
            None => r.preamble.push(w),
        },
        Token::Comment { whole, inner } => match r.clauses.last_mut() {
            Some(c) => c.comments.push(inner),
            None => r.preamble.push(whole),
        },
        Token::Date(d) => r.date = d,
    })?;
    Ok(r)
}

/// One piece of a `Received:` value, in order.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Token<'a> {
    /// A clause keyword: the words and comments that follow belong to this clause.
    Clause(ClauseKind),
    Word(&'a [u8]),
    /// A comment with (`whole`) and without (`inner`) its outer parentheses.
    Comment {
        whole: &'a [u8],
        inner: &'a [u8],
    },
    /// The date after `;` (trimmed; `None` when empty); always the last token.
    Date(Option<&'a [u8]>),
}

/// The one reader of `Received:` values: [`parse_received`] builds its tree from these tokens, and the
/// classifier reads them into a reused flat buffer ([`Tokens`]) so that a header block costs no
/// allocation per clause.
pub(crate) fn tokenize<'a>(
    value: &'a [u8],
    mut emit: impl FnMut(Token<'a>),
) -> Result<(), DecodeError> {
    let item = Item::Received;
    if value.trim_ascii().is_empty() {
        return Err(DecodeError::malformed(
            item,
            0,
            "a Received field is not empty",
        ));
    }
    let mut pos = 0;
    while pos < value.len() {
        let b = value[pos];
        if b.is_ascii_whitespace() {
            pos += 1;
        } else if b == b';' {
            let d = value[pos + 1..].trim_ascii();
            emit(Token::Date((!d.is_empty()).then_some(d)));
            break;
        } else if b == b'(' {
            let end = comment_end(value, pos).ok_or(DecodeError::malformed(
                item,
                pos,
                "a comment `(` is never closed",
            ))?;
            emit(Token::Comment {
                whole: &value[pos..end],
                inner: &value[pos + 1..end - 1],
            });
            pos = end;
        } else {
            let (_, w) = word(&value[pos..])
                .map_err(|_| DecodeError::malformed(item, pos, "unexpected byte"))?;
            pos += w.len();
            emit(match ClauseKind::of(w) {
                Some(kind) => Token::Clause(kind),
                None => Token::Word(w),
            });
        }
    }
    Ok(())
}

/// A `Received:` value as a flat list of words and comments tagged with their clause: the same reading
/// as [`Received`], in buffers that are cleared and reused from one value to the next.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    /// Clause kinds in order; index 0 is the preamble (words before any clause).
    clauses: Vec<Option<ClauseKind>>,
    /// (clause index, is a comment, byte range in the value). Preamble comments keep their parentheses,
    /// clause comments do not, as in [`Received`].
    items: Vec<(usize, bool, std::ops::Range<usize>)>,
    /// Where each clause's items start in `items` (they are in clause order): the classifier asks for
    /// one clause's words or comments a dozen times per hop, and this spares a walk over all items.
    starts: Vec<usize>,
}

/// A [`Tokens`] buffer read against the value it was filled from.
#[derive(Clone, Copy)]
pub(crate) struct TokensView<'a> {
    value: &'a [u8],
    t: &'a Tokens,
}

impl Tokens {
    /// Entries the buffers hold without growing (to decide whether keeping them is worth it).
    pub(crate) fn capacity(&self) -> usize {
        self.items
            .capacity()
            .max(self.clauses.capacity())
            .max(self.starts.capacity())
    }

    /// Reads `value` into this buffer (same errors as [`parse_received`]).
    pub(crate) fn fill<'a>(&'a mut self, value: &'a [u8]) -> Result<TokensView<'a>, DecodeError> {
        self.clauses.clear();
        self.items.clear();
        self.starts.clear();
        self.clauses.push(None);
        self.starts.push(0);
        let base = value.as_ptr() as usize;
        let range = |s: &[u8]| {
            let start = s.as_ptr() as usize - base;
            start..start + s.len()
        };
        let (clauses, items, starts) = (&mut self.clauses, &mut self.items, &mut self.starts);
        tokenize(value, |t| match t {
            Token::Clause(kind) => {
                clauses.push(Some(kind));
                starts.push(items.len());
            }
            Token::Word(w) => items.push((clauses.len() - 1, false, range(w))),
            Token::Comment { whole, inner } => {
                let preamble = clauses.len() == 1;
                let r = if preamble { range(whole) } else { range(inner) };
                items.push((clauses.len() - 1, !preamble, r));
            }
            Token::Date(_) => {}
        })?;
        Ok(TokensView { value, t: self })
    }
}

impl<'a> TokensView<'a> {
    /// The index of the first clause of `kind` (what [`Received::clause`] finds).
    pub(crate) fn clause(&self, kind: ClauseKind) -> Option<usize> {
        self.t.clauses.iter().position(|k| *k == Some(kind))
    }

    /// The items of clause `clause` (none when there is no such clause).
    fn items(&self, clause: usize) -> &'a [(usize, bool, std::ops::Range<usize>)] {
        let t = self.t;
        let Some(&start) = t.starts.get(clause) else {
            return &[];
        };
        let end = t.starts.get(clause + 1).copied().unwrap_or(t.items.len());
        &t.items[start..end]
    }

    fn of(&self, clause: usize, comment: bool) -> impl Iterator<Item = &'a [u8]> + Clone + 'a {
        let value = self.value;
        self.items(clause)
            .iter()
            .filter(move |(_, m, _)| *m == comment)
            .map(move |(_, _, r)| &value[r.clone()])
    }

    /// The words of clause `clause` (none for `None`).
    pub(crate) fn words(
        &self,
        clause: Option<usize>,
    ) -> impl Iterator<Item = &'a [u8]> + Clone + 'a {
        // usize::MAX matches no item.
        self.of(clause.unwrap_or(usize::MAX), false)
    }

    /// The comments of clause `clause`, without their outer parentheses.
    pub(crate) fn comments(
        &self,
        clause: Option<usize>,
    ) -> impl Iterator<Item = &'a [u8]> + Clone + 'a {
        self.of(clause.unwrap_or(usize::MAX), true)
    }

    /// Words and comments (with their parentheses) before the first clause.
    pub(crate) fn preamble(&self) -> impl Iterator<Item = &'a [u8]> + Clone + 'a {
        let value = self.value;
        self.items(0).iter().map(move |(_, _, r)| &value[r.clone()])
    }
}

/// A run of bytes up to white space, `(` or `;` (a stray `)` is kept as part of a word).
fn word(i: &[u8]) -> IResult<&[u8], &[u8]> {
    // A table lookup per byte: words are most of a Received value.
    let n = i
        .iter()
        .position(|&b| WORD_END[usize::from(b)])
        .unwrap_or(i.len());
    if n == 0 {
        return Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::TakeWhile1,
        )));
    }
    Ok((&i[n..], &i[..n]))
}

/// Bytes that end a word: ASCII white space (as `u8::is_ascii_whitespace`), `(` and `;`.
const WORD_END: [bool; 256] = {
    let mut t = [false; 256];
    let ends = *b" \t\n\x0c\r(;";
    let mut k = 0;
    while k < ends.len() {
        t[ends[k] as usize] = true;
        k += 1;
    }
    t
};

/// Index one past the `)` closing the comment opened at `start`; nesting and `\` quoting honoured.
fn comment_end(v: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < v.len() {
        match v[i] {
            b'\\' => i += 1,
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod token_tests {
    use super::*;
    use proptest::prelude::*;

    const ALL_CLAUSES: [ClauseKind; 6] = [
        ClauseKind::From,
        ClauseKind::By,
        ClauseKind::Via,
        ClauseKind::With,
        ClauseKind::Id,
        ClauseKind::For,
    ];

    /// The flat reading must say exactly what the tree says.
    fn agree(value: &[u8]) -> Result<(), TestCaseError> {
        let mut t = Tokens::default();
        // Reuse the buffer dirty, as the classifier does.
        let _ = t.fill(b"from a (x) by b with c (y) id d; date");
        match (parse_received(value), t.fill(value)) {
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (Ok(r), Ok(v)) => {
                prop_assert_eq!(v.preamble().collect::<Vec<_>>(), r.preamble.clone());
                for k in ALL_CLAUSES {
                    let c = v.clause(k);
                    prop_assert_eq!(c.is_some(), r.clause(k).is_some());
                    let want = r.clause(k);
                    prop_assert_eq!(
                        v.words(c).collect::<Vec<_>>(),
                        want.map(|c| c.words.clone()).unwrap_or_default()
                    );
                    prop_assert_eq!(
                        v.comments(c).collect::<Vec<_>>(),
                        want.map(|c| c.comments.clone()).unwrap_or_default()
                    );
                }
            }
            (a, b) => prop_assert!(false, "tree {:?} but tokens {:?}", a.is_ok(), b.is_ok()),
        }
        Ok(())
    }

    #[test]
    fn real_values_agree() {
        for v in [
            &b"(qmail 1234 invoked from network); 1 Jan 2024"[..],
            b"from EX01.corp.example.com (10.1.2.3) by EX02.corp.example.com (10.1.2.4) with Microsoft SMTP Server (version=TLS1_2, cipher=X) id 15.1.2507.39 via Frontend Transport; Tue, 4 Jun 2024",
            b"from [10.0.0.9] (helo=app) by mail.x with esmtpsa (TLS1.3) tls T (Exim 4.96) (envelope-from <a@x>) id 1rX; Tue",
            b"by a (Postfix) by b (other) with x",
            b"  ",
            b"from a (unclosed",
        ] {
            agree(v).unwrap();
        }
    }

    const PIECES: &[&[u8]] = &[
        b"from ",
        b"by ",
        b"with ",
        b"id ",
        b"via ",
        b"FOR ",
        b"(",
        b")",
        b"\\",
        b";",
        b" ",
        b"\t",
        b"host.example ",
        b"Microsoft SMTP Server ",
        b"15.1.2507.39",
        b"\xff",
    ];

    proptest! {
        #[test]
        fn tokens_agree_with_the_tree(v in proptest::collection::vec(proptest::sample::select(PIECES), 0..24)) {
            agree(&v.concat())?;
        }

        #[test]
        fn clause_keywords_are_read_as_the_plain_comparison_reads_them(w in proptest::collection::vec(
            prop_oneof![any::<u8>(), proptest::sample::select(b"byidviaforfromwithBYIDVIAFORFROMWITH".to_vec())],
            0..6,
        )) {
            let want = ALL_CLAUSES.into_iter().find(|k| w.eq_ignore_ascii_case(k.keyword().as_bytes()));
            prop_assert_eq!(ClauseKind::of(&w), want);
        }

        #[test]
        fn word_ends_where_the_rule_says(v in proptest::collection::vec(any::<u8>(), 0..30)) {
            let want = v.iter().position(|&b| b.is_ascii_whitespace() || b == b'(' || b == b';').unwrap_or(v.len());
            match word(&v) {
                Ok((rest, w)) => {
                    prop_assert_eq!(w.len(), want);
                    prop_assert_eq!(rest.len(), v.len() - want);
                    prop_assert!(want > 0);
                }
                Err(_) => prop_assert_eq!(want, 0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(c: &Clause<'_>) -> Vec<String> {
        c.words
            .iter()
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect()
    }

    #[test]
    fn exchange_frontend_transport() {
        let v = b"from EX01.corp.example.com (10.1.2.3) by EX02.corp.example.com (10.1.2.4) with Microsoft SMTP \
Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.1.2507.39 via Frontend Transport; \
Tue, 4 Jun 2024 10:11:12 +0000";
        let r = parse_received(v).unwrap();
        assert_eq!(
            r.clause(ClauseKind::From).unwrap().first(),
            Some(&b"EX01.corp.example.com"[..])
        );
        assert_eq!(
            r.clause(ClauseKind::From).unwrap().comments,
            vec![&b"10.1.2.3"[..]]
        );
        assert_eq!(
            r.clause(ClauseKind::By).unwrap().first(),
            Some(&b"EX02.corp.example.com"[..])
        );
        let with = r.clause(ClauseKind::With).unwrap();
        assert_eq!(words(with), ["Microsoft", "SMTP", "Server"]);
        assert!(with.comments[0].starts_with(b"version=TLS1_2"));
        assert_eq!(
            r.clause(ClauseKind::Id).unwrap().first(),
            Some(&b"15.1.2507.39"[..])
        );
        assert_eq!(
            r.clause(ClauseKind::Via).unwrap().text(),
            "Frontend Transport"
        );
        assert_eq!(r.date, Some(&b"Tue, 4 Jun 2024 10:11:12 +0000"[..]));
    }

    #[test]
    fn exchange_short_forms() {
        let r = parse_received(
            b"from a (1.2.3.4) by b (5.6.7.8) with Microsoft SMTP Server (TLS) id 15.0.1497.18; d",
        )
        .unwrap();
        assert_eq!(
            r.clause(ClauseKind::With).unwrap().comments,
            vec![&b"TLS"[..]]
        );
        assert_eq!(
            r.clause(ClauseKind::Id).unwrap().first(),
            Some(&b"15.0.1497.18"[..])
        );
        let r = parse_received(b"from EX01.corp ([fe80::1]) by EX01.corp ([fe80::1%12]) with mapi id 15.00.1497.040; x").unwrap();
        assert_eq!(r.clause(ClauseKind::With).unwrap().text(), "mapi");
        assert_eq!(
            r.clause(ClauseKind::Id).unwrap().first(),
            Some(&b"15.00.1497.040"[..])
        );
        let r = parse_received(
            b"from localhost by Pickup with Microsoft SMTP Server id 8.3.298.1; Mon",
        )
        .unwrap();
        assert_eq!(
            r.clause(ClauseKind::By).unwrap().first(),
            Some(&b"Pickup"[..])
        );
        assert_eq!(
            r.clause(ClauseKind::Id).unwrap().first(),
            Some(&b"8.3.298.1"[..])
        );
    }

    #[test]
    fn postfix_exim_sendmail_qmail() {
        let r = parse_received(b"from mail.sender.example (mail.sender.example [192.0.2.7]) (using TLSv1.3 with cipher \
TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519) (No client certificate requested) by mx.example.com \
(Postfix) with ESMTPS id 4VtXyZ1abcz9sWR for <u@example.com>; Tue, 4 Jun 2024 10:11:12 +0200 (CEST)").unwrap();
        let from = r.clause(ClauseKind::From).unwrap();
        assert_eq!(from.comments.len(), 3);
        assert_eq!(
            r.clause(ClauseKind::By).unwrap().comments,
            vec![&b"Postfix"[..]]
        );
        assert_eq!(r.clause(ClauseKind::With).unwrap().text(), "ESMTPS");
        assert_eq!(
            r.clause(ClauseKind::For).unwrap().first(),
            Some(&b"<u@example.com>"[..])
        );

        let r = parse_received(b"from [192.0.2.9] (helo=relay.example) by mx.example.org with esmtps (TLS1.3) tls \
TLS_AES_256_GCM_SHA384 (Exim 4.96) (envelope-from <a@relay.example>) id 1rXyZa-000Abc-2B for b@example.org; Tue").unwrap();
        let with = r.clause(ClauseKind::With).unwrap();
        assert_eq!(with.first(), Some(&b"esmtps"[..]));
        assert!(with.comments.contains(&&b"Exim 4.96"[..]));

        let r = parse_received(b"from host.example (host.example [192.0.2.1]) by mx.example (8.15.2/8.15.2) with ESMTP id x4ABC; d").unwrap();
        assert_eq!(
            r.clause(ClauseKind::By).unwrap().comments,
            vec![&b"8.15.2/8.15.2"[..]]
        );

        let r = parse_received(b"(qmail 1234 invoked from network); 4 Jun 2024 10:11:12 -0000")
            .unwrap();
        assert_eq!(r.preamble, vec![&b"(qmail 1234 invoked from network)"[..]]);
        assert!(r.clauses.is_empty());
    }

    #[test]
    fn errors() {
        assert!(matches!(
            parse_received(b"  "),
            Err(DecodeError::Malformed { offset: 0, .. })
        ));
        assert!(matches!(
            parse_received(b"from a (b (c) by x"),
            Err(DecodeError::Malformed { offset: 7, .. })
        ));
        // A stray `)` and 8-bit bytes are tolerated.
        assert!(parse_received(b"from a) \xff\xfe by b").is_ok());
    }

    #[test]
    fn render_round_trips() {
        let v = b"from a (x (nested) y) by b with Microsoft SMTP Server (TLS) id 15.1.2.3 for <c@d>; Mon, 1 Jan 2024";
        let r = parse_received(v).unwrap();
        assert_eq!(r.render(), v.to_vec());
    }
}

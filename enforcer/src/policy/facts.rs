//! What the schedule reads of a sender, and the compact form the daemon keeps of it in memory.
//!
//! The store holds each [`Record`] whole (addresses, findings, up to 256 audit lines: kilobytes).
//! Deciding a sender's stage, next change and kernel entry needs only its prefix, episode, pauses
//! and a one-line summary of its evidence, so the daemon keeps a [`Compact`] per sender (32 bytes
//! plus what it shares) and reads the record from the store when it changes one. Both implement
//! [`Facts`], so every policy function gives the same answer for either.

use super::record::{Episode, Pause, Record};
use crate::net::Prefix;
use std::borrow::Cow;
use std::sync::Arc;

/// The inputs of [`super::Policy::stage_at`], [`super::Policy::next_change`] and
/// [`super::Policy::desired_one`].
pub trait Facts {
    fn prefix(&self) -> Prefix;
    fn episode(&self) -> Option<Episode>;
    fn pauses(&self) -> &[Pause];
    /// [`super::Evidence::summary`] of the evidence held.
    fn evidence_summary(&self) -> Option<Cow<'_, str>>;
    fn upgrade_to(&self) -> Option<&str>;

    /// The pause in force at `now`, if any.
    fn active_pause(&self, now: i64) -> Option<&Pause> {
        self.pauses().iter().rev().find(|p| p.active_at(now))
    }
}

impl Facts for Record {
    fn prefix(&self) -> Prefix {
        self.prefix
    }
    fn episode(&self) -> Option<Episode> {
        self.episode.clone()
    }
    fn pauses(&self) -> &[Pause] {
        &self.pauses
    }
    fn evidence_summary(&self) -> Option<Cow<'_, str>> {
        self.evidence.as_ref().map(|e| Cow::Owned(e.summary()))
    }
    fn upgrade_to(&self) -> Option<&str> {
        self.evidence.as_ref()?.upgrade_to.as_deref()
    }
}

/// What a notice and a kernel entry's reason say of a sender's evidence. Thousands of senders
/// running the same build share one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Summary {
    /// [`super::Evidence::summary`].
    pub text: Box<str>,
    /// The build, else the version, the evidence names (the `{build}` of a notice).
    pub build: Option<Box<str>>,
    pub upgrade_to: Option<Box<str>>,
}

/// One [`Summary`] per distinct evidence, shared by every sender that has it.
pub type Summaries = crate::interner::Interner<Summary, Summary>;

/// A sender as the daemon keeps it in memory: what [`Facts`] needs, without the prefix (the key of
/// the map that holds it).
#[derive(Clone, Debug, PartialEq)]
pub struct Compact {
    started_at: i64,
    reached: u32,
    /// The daemon's metric label set for this sender (an index into its own table).
    pub label: u16,
    in_episode: bool,
    /// Nearly every sender has none: no allocation then, and a thin pointer (8 bytes where a
    /// `Vec` takes 24 and a boxed slice 16).
    #[allow(clippy::box_collection)]
    pauses: Option<Box<Vec<Pause>>>,
    summary: Option<Arc<Summary>>,
}

impl Compact {
    /// The compact form of `rec`, its summary shared through `summaries`.
    pub fn of(rec: &Record, summaries: &mut Summaries) -> Self {
        let ep = rec.episode.clone();
        Compact {
            started_at: ep.as_ref().map_or(0, |e| e.started_at),
            reached: ep.as_ref().map_or(0, |e| e.reached),
            label: 0,
            in_episode: ep.is_some(),
            pauses: (!rec.pauses.is_empty()).then(|| Box::new(rec.pauses.clone())),
            summary: rec.evidence.as_ref().map(|e| {
                let s = Summary {
                    text: e.summary().into(),
                    build: e
                        .build
                        .as_ref()
                        .or(e.version.as_ref())
                        .map(|b| b.as_str().into()),
                    upgrade_to: e.upgrade_to.as_deref().map(Into::into),
                };
                summaries.share(s, Summary::clone)
            }),
        }
    }

    /// Same as [`Compact::of`] but keeps `label` (the record changed; its label is updated later).
    pub fn refresh(&mut self, rec: &Record, summaries: &mut Summaries) {
        let label = self.label;
        *self = Compact::of(rec, summaries);
        self.label = label;
    }

    pub fn summary_arc(&self) -> Option<Arc<Summary>> {
        self.summary.clone()
    }

    pub fn in_episode(&self) -> bool {
        self.in_episode
    }

    /// With its prefix, for the policy functions.
    pub fn at(&self, prefix: Prefix) -> Held<'_> {
        Held { prefix, c: self }
    }
}

/// A [`Compact`] with its prefix.
#[derive(Clone, Copy, Debug)]
pub struct Held<'a> {
    pub prefix: Prefix,
    pub c: &'a Compact,
}

impl Facts for Held<'_> {
    fn prefix(&self) -> Prefix {
        self.prefix
    }
    fn episode(&self) -> Option<Episode> {
        self.c.in_episode.then_some(Episode {
            started_at: self.c.started_at,
            reached: self.c.reached,
        })
    }
    fn pauses(&self) -> &[Pause] {
        self.c.pauses.as_deref().map_or(&[], |v| v.as_slice())
    }
    fn evidence_summary(&self) -> Option<Cow<'_, str>> {
        self.c.summary.as_ref().map(|s| Cow::Borrowed(&*s.text))
    }
    fn upgrade_to(&self) -> Option<&str> {
        self.c.summary.as_ref()?.upgrade_to.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The daemon holds one per sender: a million of them must fit in a few tens of MiB.
    #[test]
    fn a_compact_sender_is_small() {
        assert!(
            std::mem::size_of::<Compact>() <= 32,
            "{}",
            std::mem::size_of::<Compact>()
        );
    }
}

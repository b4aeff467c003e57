//! The engine: sender records and operator rules in memory, mirrored durably in the store and
//! applied to the kernel. Single-owner and synchronous; the tokio shell in `runner.rs` feeds it
//! requests and wakes it at [`Engine::next_wakeup`]. Every method takes `now` (Unix seconds).
//!
//! Kernel entries are keyed by exact prefix. For a prefix with both an operator rule and a sender
//! record, the operator rule wins; when it is removed or expires, the engine's entry comes back.
//! Order of every change: store commit first (so what the CLI is told survives kill -9), then the
//! kernel, then the reply.

mod bulk;

use super::kernel::Kernel;
use super::metrics::EngineMetrics;
use super::views;
use crate::classify::{classify_connecting, SupportOverrides};
use crate::control::{Reply, Request};
use crate::datapath::Clock;
use crate::duration::Span;
use crate::evidence::milter::session::Sighting;
use crate::evidence::reply::{Board, Notice};
use crate::evidence::Channel;
use crate::interner::Interner;
use crate::listing::{self, Filter, PageHead, Source, PAGE};
use crate::net::Prefix;
use crate::policy::{
    Action, Compact, Desired, Evidence, Held, Policy, Record, Refusal, Standing, Summaries, Summary,
};
use crate::rule::{Rule, RuleSource, Verdict};
use crate::store::Store;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash as _, Hasher as _};
use std::net::IpAddr;
use std::ops::Bound;
use std::sync::Arc;

mod fleet_io;
mod operator;
pub use fleet_io::Touched;
use operator::OperatorRules;

/// What makes two senders' notices the same: stage, kernel rule (without its prefix), evidence.
type NoticeKey = (u32, u64, Option<Arc<Summary>>);

/// The prefix of a shared notice's rule; [`Board::lookup`] puts the sender's own in its copy.
const SHARED: Prefix = Prefix::ZERO_V4;

/// The label sets of `enforcer_engine_senders` (a handful: state x stage), each kept once; a
/// sender holds the index of its own (0 = none yet), not a copy of the strings.
#[derive(Debug, Default)]
struct LabelSets {
    sets: Vec<super::metrics::Labels>,
    ids: HashMap<super::metrics::Labels, u16>,
}

impl LabelSets {
    fn id(&mut self, set: super::metrics::Labels) -> u16 {
        if let Some(&id) = self.ids.get(&set) {
            return id;
        }
        // States x stages: a schedule would need 16,000 stages to run out.
        let id = u16::try_from(self.sets.len() + 1).unwrap_or(u16::MAX);
        self.sets.push(set.clone());
        self.ids.insert(set, id);
        id
    }

    /// The set of `id` (`None` for 0, no set yet).
    fn get(&self, id: u16) -> Option<&super::metrics::Labels> {
        self.sets.get(usize::from(id).checked_sub(1)?)
    }
}

/// A failed kernel write is retried this many seconds later.
const RETRY_SECS: i64 = 5;

/// At most one log line about failing kernel writes per this many seconds (a full map would
/// otherwise log one line per entry every retry).
const WRITE_ERROR_LOG_SECS: i64 = 60;

/// Whether the datapath the engine writes to is still there; set by the daemon's housekeeping.
/// While it is gone, requests that would change enforcement are refused with the reason.
#[derive(Clone, Debug, Default)]
pub struct DatapathHealth(std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl DatapathHealth {
    /// `None` = up; otherwise why it is down.
    pub fn problem(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records the current state; true when it changed.
    pub fn set(&self, problem: Option<String>) -> bool {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let changed = *slot != problem;
        *slot = problem;
        changed
    }
}

/// Lets one line through per period and counts what it held back.
#[derive(Debug, Default)]
pub struct LogLimit {
    last: Option<i64>,
    suppressed: u64,
}

impl LogLimit {
    /// `Some(held back since the last line)` when a line may be logged at `now`.
    pub fn allow(&mut self, now: i64, period: i64) -> Option<u64> {
        if self.last.is_some_and(|t| now < t + period) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// A kernel write that failed; `full` when the map had no room.
#[derive(Debug)]
struct WriteFailure {
    full: bool,
    msg: String,
}

/// What the engine needs besides its store and kernel.
#[derive(Clone, Debug, Default)]
pub struct EngineSettings {
    pub policy: Policy,
    pub overrides: SupportOverrides,
    /// The datapath only counts; shown in `enforcer sender` ("would be refused").
    pub report_only: bool,
    /// Reported by `ping`, so the CLI routes operator commands only to the daemon that owns the
    /// state directory it was pointed at.
    pub state_dir: Option<std::path::PathBuf>,
    /// Where the engine publishes each enforced sender's kernel rule for the MTA listeners.
    pub board: Board,
    /// Shared with the daemon's housekeeping, which notices a vanished datapath.
    pub datapath: DatapathHealth,
    /// A channel that shows a refused sender the reply text is configured (milter, policy
    /// service): an operator notice throttle is refused without one, as a `notice` stage is.
    pub notice_channel: bool,
}

/// What start-up reconciliation did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub senders: usize,
    pub operator_rules: usize,
    /// Entries written (missing from the kernel, or different there).
    pub written: usize,
    /// Desired entries the kernel already held as they should be (boot-clock times within a
    /// second), left alone.
    pub kept: usize,
    /// Kernel entries the store does not know, removed.
    pub removed: usize,
    pub failed: usize,
}

pub struct Engine<K: Kernel> {
    policy: Policy,
    overrides: SupportOverrides,
    report_only: bool,
    notice_channel: bool,
    state_dir: Option<std::path::PathBuf>,
    store: Store,
    kernel: K,
    /// Every sender, compact: the whole record is the store's, read when it changes.
    records: BTreeMap<Prefix, Compact>,
    /// Evidence summaries the records share.
    summaries: Summaries,
    operator: OperatorRules,
    /// What this engine last wrote to the kernel per prefix, as a [`written`] fingerprint: the
    /// rule itself is in `operator` or follows from the record (a copy would double the memory).
    applied: BTreeMap<Prefix, u64>,
    timers: BTreeSet<(i64, Prefix)>,
    due: BTreeMap<Prefix, i64>,
    /// The `enforcer_engine_senders` label sets; each record holds the index of its own.
    label_sets: LabelSets,
    /// Notices by (stage, kernel rule, evidence): the board's entries point at these.
    notices: Interner<NoticeKey, Notice>,
    metrics: EngineMetrics,
    /// Wall clock minus boot clock (ns) when the kernel entries were last converted.
    clock_offset: Option<i128>,
    board: Board,
    /// Local changes the fleet has not picked up yet ([`Engine::take_touched`]); only kept while a
    /// fleet takes them ([`Engine::share_changes`]), so a daemon without one never piles them up.
    touched: Vec<Touched>,
    sharing: bool,
    datapath: DatapathHealth,
    write_errors: LogLimit,
    /// Where the next self-check continues (the last prefix it compared).
    check_cursor: Option<Prefix>,
    /// During start-up: what reconciliation changed in the kernel, to undo if the start fails.
    start_journal: Option<Journal<K::Saved>>,
}

/// Kernel entries a start-up reconciliation added, and those it replaced or removed (with what
/// the kernel held before).
struct Journal<S> {
    added: Vec<Prefix>,
    replaced: Vec<(Prefix, S)>,
}

impl<S> Default for Journal<S> {
    fn default() -> Self {
        Journal {
            added: Vec::new(),
            replaced: Vec::new(),
        }
    }
}

impl<K: Kernel> Engine<K> {
    /// Loads the store, catches records up with the time the daemon was down, and makes the kernel
    /// maps equal to what the store says (rebuilding them when they are empty after a reboot).
    pub fn start(
        settings: EngineSettings,
        store: Store,
        kernel: K,
        metrics: EngineMetrics,
        now: i64,
    ) -> anyhow::Result<(Self, Reconciled)> {
        let mut e = Engine {
            policy: settings.policy,
            overrides: settings.overrides,
            report_only: settings.report_only,
            notice_channel: settings.notice_channel,
            state_dir: settings.state_dir,
            store,
            kernel,
            records: BTreeMap::new(),
            summaries: Summaries::default(),
            operator: OperatorRules::default(),
            applied: BTreeMap::new(),
            timers: BTreeSet::new(),
            due: BTreeMap::new(),
            label_sets: LabelSets::default(),
            notices: Interner::default(),
            metrics,
            clock_offset: None,
            board: settings.board,
            touched: Vec::new(),
            sharing: false,
            datapath: settings.datapath,
            write_errors: LogLimit::default(),
            check_cursor: None,
            start_journal: None,
        };
        // Records stream in one at a time and stay compact; the maps are built from sorted runs,
        // so their nodes are full (inserting in order leaves B-tree nodes half empty).
        let mut compact = Vec::new();
        let summaries = &mut e.summaries;
        e.store.each_sender(|rec| {
            compact.push((rec.prefix, Compact::of(&rec, summaries)));
        })?;
        compact.sort_unstable_by_key(|(p, _)| *p);
        e.records = compact.into_iter().collect();
        e.catch_up_all(now)?;
        let mut rules = Vec::new();
        let operator = &mut e.operator;
        e.store.each_rule(|rule| {
            rules.push((rule.prefix, operator.pack(rule)));
        })?;
        e.operator.build(rules);
        e.start_journal = Some(Journal::default());
        let report = e.converge(now)?;
        Ok((e, report))
    }

    /// The start is complete (the datapath is attached): what reconciliation replaced is forgotten.
    pub fn keep_start(&mut self) {
        self.start_journal = None;
    }

    /// The start failed after reconciliation (attaching failed): puts every kernel entry it
    /// wrote or removed back as it was, so a failed start leaves the datapath exactly as it found
    /// it. Returns how many entries were put back and how many could not be.
    pub fn roll_back_start(&mut self) -> (usize, usize) {
        let Some(journal) = self.start_journal.take() else {
            return (0, 0);
        };
        let (mut done, mut failed) = (0, 0);
        let mut count = |what: &str, p: &Prefix, r: anyhow::Result<()>| match r {
            Ok(()) => done += 1,
            Err(err) => {
                failed += 1;
                log::error!("rolling back the failed start: {what} {p}: {err:#}");
            }
        };
        for p in &journal.added {
            let r = self.kernel.remove(p).map(|_| ());
            count("removing", p, r);
        }
        for (p, old) in &journal.replaced {
            let r = self.kernel.restore(p, old);
            count("restoring", p, r);
        }
        self.applied.clear();
        // Entries it removed again leave presence-filter bits behind.
        if let Err(err) = self.kernel.settle(true) {
            log::error!(
                "rolling back the failed start: recomputing the prefix presence filters: {err:#}"
            );
        }
        (done, failed)
    }

    /// What start-up and reload share: stage metrics from the schedule, kernel := store, then every
    /// prefix's timer and metric label.
    fn converge(&mut self, now: i64) -> anyhow::Result<Reconciled> {
        let kinds: Vec<&str> = self
            .policy
            .schedule
            .stages()
            .iter()
            .map(|st| action_kind(&st.action))
            .collect();
        self.metrics.init(&kinds);
        let report = self.reconcile(now)?;
        let mut prefixes: Vec<Prefix> = self
            .records
            .keys()
            .chain(self.operator.keys())
            .copied()
            .collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        // Timers and due times for every prefix, built in bulk (full B-tree nodes).
        let mut due = Vec::new();
        for &p in &prefixes {
            if let Some(at) = self.next_due(p, now) {
                due.push((p, at));
            }
        }
        let mut timers: Vec<(i64, Prefix)> = due.iter().map(|&(p, at)| (at, p)).collect();
        timers.sort_unstable();
        self.timers = timers.into_iter().collect();
        self.due = due.into_iter().collect();
        let mut notices = Vec::new();
        for &p in &prefixes {
            if let Some(n) = self.notice(p, now) {
                notices.push((p, n));
            }
            self.relabel_only(p, now);
        }
        self.board.replace_all(notices);
        Ok(report)
    }

    /// Applies a reloaded configuration: schedule, allow-list, pause budget, aggregation (for new
    /// records), classifier overrides and report-only. Records catch up under the new schedule
    /// (stages never go down) and the kernel entries are made equal to what it says, in place: no
    /// entry is removed that stays.
    pub fn reconfigure(
        &mut self,
        settings: EngineSettings,
        now: i64,
    ) -> anyhow::Result<Reconciled> {
        self.policy = settings.policy;
        self.overrides = settings.overrides;
        self.report_only = settings.report_only;
        self.notice_channel = settings.notice_channel;
        self.catch_up_all(now)?;
        self.converge(now)
    }

    /// Kernel := store. Entries the store does not know are removed; every desired entry the
    /// kernel does not already hold is written. During start-up, what it replaces is journaled
    /// for [`Engine::roll_back_start`].
    pub fn reconcile(&mut self, now: i64) -> anyhow::Result<Reconciled> {
        let mut rep = Reconciled {
            senders: self.records.len(),
            operator_rules: self.operator.len(),
            ..Reconciled::default()
        };
        let mut journal = self.start_journal.take();
        for p in self.kernel.prefixes()? {
            if self.desired_for(&p, now).is_some() {
                continue;
            }
            let old = match self.kernel.save(&p) {
                Ok(old) => old,
                Err(err) => {
                    self.reconcile_error(&mut rep, now, "reading stale kernel entry", &p, &err);
                    continue;
                }
            };
            self.metrics.kernel_writes.inc();
            match self.kernel.remove(&p) {
                Ok(_) => {
                    rep.removed += 1;
                    if let (Some(j), Some(old)) = (journal.as_mut(), old) {
                        j.replaced.push((p, old));
                    }
                }
                Err(err) => {
                    self.reconcile_error(&mut rep, now, "removing stale kernel entry", &p, &err)
                }
            }
        }
        self.applied.clear();
        // Built in bulk once every key is known (full B-tree nodes).
        let mut applied = Vec::new();
        // Keys only: no copy of the rules. A prefix with a record and an operator rule comes twice.
        let mut keys: Vec<Prefix> = self
            .records
            .keys()
            .chain(self.operator.keys())
            .copied()
            .collect();
        keys.sort_unstable();
        keys.dedup();
        for p in keys {
            let Some(rule) = self.desired_for(&p, now) else {
                continue;
            };
            let old = match self.kernel.save(&p) {
                Ok(old) => old,
                Err(err) => {
                    self.reconcile_error(&mut rep, now, "reading kernel entry", &p, &err);
                    continue;
                }
            };
            if old.as_ref().is_some_and(|o| self.kernel.is(o, &rule)) {
                rep.kept += 1;
                applied.push((p, written(&rule)));
                continue;
            }
            self.metrics.kernel_writes.inc();
            match self.kernel.upsert(&rule) {
                Ok(()) => {
                    rep.written += 1;
                    applied.push((p, written(&rule)));
                    if let Some(j) = journal.as_mut() {
                        match old {
                            Some(old) => j.replaced.push((p, old)),
                            None => j.added.push(p),
                        }
                    }
                }
                Err(err) => {
                    if err.downcast_ref::<crate::datapath::MapFull>().is_some() {
                        self.metrics.kernel_map_full.inc();
                    }
                    self.reconcile_error(&mut rep, now, "writing kernel entry", &p, &err);
                }
            }
        }
        self.applied = applied.into_iter().collect();
        // Every desired prefix is written (its filter bits set first); now drop the bits of
        // prefixes no longer there, including those removed by earlier runs.
        if let Err(err) = self.kernel.settle(true) {
            log::error!("recomputing the prefix presence filters: {err:#} (stale bits only cost a trie walk; the self-check retries)");
        }
        self.start_journal = journal;
        Ok(rep)
    }

    fn reconcile_error(
        &mut self,
        rep: &mut Reconciled,
        now: i64,
        what: &str,
        p: &Prefix,
        err: &anyhow::Error,
    ) {
        self.metrics.kernel_errors.inc();
        if self.write_errors.allow(now, WRITE_ERROR_LOG_SECS).is_some() {
            log::error!("{what} {p}: {err:#} (further errors of this start-up are only counted)");
        }
        rep.failed += 1;
    }

    /// Every stored sender record, whole (read from the store; errors are logged and end the list).
    pub fn records(&self) -> std::vec::IntoIter<Record> {
        self.store
            .senders()
            .unwrap_or_else(|err| {
                log::error!("reading the sender records: {err:#}");
                Vec::new()
            })
            .into_iter()
    }

    /// How many distinct evidence summaries the senders share.
    #[cfg(test)]
    pub(crate) fn summaries_held(&self) -> usize {
        self.summaries.len()
    }

    /// The compact sender held for `p`, with its prefix.
    fn held(&self, p: &Prefix) -> Option<Held<'_>> {
        self.records.get(p).map(|c| c.at(*p))
    }

    /// The whole stored record of a sender the engine holds.
    fn load(&self, p: &Prefix) -> anyhow::Result<Record> {
        self.store
            .sender(p)?
            .ok_or_else(|| anyhow::anyhow!("the sender record for {p} is missing from the store"))
    }

    /// Takes a record that was just stored: its compact form replaces the one held.
    fn keep(&mut self, rec: &Record) {
        match self.records.get_mut(&rec.prefix) {
            Some(c) => c.refresh(rec, &mut self.summaries),
            None => {
                let c = Compact::of(rec, &mut self.summaries);
                self.records.insert(rec.prefix, c);
            }
        }
    }

    /// Forgets a sender held in memory (its label's count goes with it).
    fn drop_record(&mut self, p: &Prefix) -> bool {
        match self.records.remove(p) {
            Some(c) => {
                if let Some(set) = self.label_sets.get(c.label) {
                    self.metrics.senders.get_or_create(set).dec();
                }
                true
            }
            None => false,
        }
    }

    /// Catches every sender up with `now` (stages the clock reached while the daemon was down or
    /// under a new schedule, pauses that ended): only those behind are read from the store, and
    /// they are written back in chunks, so a million senders never sit in memory whole.
    fn catch_up_all(&mut self, now: i64) -> anyhow::Result<()> {
        const CHUNK: usize = 4096;
        let behind: Vec<Prefix> = self
            .records
            .iter()
            .filter(|(p, c)| self.policy.behind(&c.at(**p), now))
            .map(|(p, _)| *p)
            .collect();
        for chunk in behind.chunks(CHUNK) {
            let mut changed = Vec::with_capacity(chunk.len());
            for mut rec in self.store.senders_of(chunk)?.into_iter().flatten() {
                if catch_up(&self.policy, &mut rec, now) {
                    changed.push(rec);
                }
            }
            // The stage is a function of the stored times, so a crash between chunks loses nothing:
            // the next start recomputes it.
            self.store.put_senders(changed.iter())?;
            for rec in &changed {
                self.keep(rec);
            }
        }
        Ok(())
    }

    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    #[cfg(test)]
    pub(crate) fn kernel_mut_for_test(&mut self) -> &mut K {
        &mut self.kernel
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// When the engine next needs to run [`Engine::tick`]; `None` = only on requests.
    pub fn next_wakeup(&self) -> Option<i64> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// Kernel entries hold boot-clock times converted from the wall clock when written. When the wall
    /// clock steps (NTP at boot, an operator) by more than a second, every entry is re-converted so
    /// throttle windows stay on wall-clock boundaries. O(1) unless the clock stepped.
    pub fn check_clock(&mut self, unix_ns: i128, boot_ns: u64) {
        let offset = unix_ns - boot_ns as i128;
        let stepped = self
            .clock_offset
            .is_some_and(|last| (offset - last).abs() > 1_000_000_000);
        if stepped {
            let now = (unix_ns / 1_000_000_000) as i64;
            let keys: Vec<Prefix> = self.applied.keys().copied().collect();
            let mut moved = 0;
            for p in &keys {
                let Some(rule) = self.settled(p, now) else {
                    // A change is due that its timer has not applied yet: write what is wanted
                    // now, converted with the new clock.
                    if self.sync(*p, now).is_ok() {
                        moved += 1;
                    }
                    self.schedule(*p, now);
                    continue;
                };
                self.metrics.kernel_writes.inc();
                match self.kernel.realign(&rule) {
                    Ok(true) => moved += 1,
                    Ok(false) => {}
                    Err(err) => {
                        self.metrics.kernel_errors.inc();
                        log::error!("re-aligning {} to the wall clock: {err:#}", rule.prefix);
                    }
                }
            }
            log::info!(
                "the wall clock stepped; re-aligned {moved} of {} kernel entries",
                keys.len()
            );
        }
        self.clock_offset = Some(offset);
    }

    /// Applies every change due at or before `now`: only the senders whose timer fired are touched.
    pub fn tick(&mut self, now: i64) {
        while let Some(&(t, p)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            self.due.remove(&p);
            if self.operator.packed(&p).is_some_and(|r| r.is_expired(now)) {
                // Expired operator rules leave the store too, as `enforcer run` does without the engine.
                match self.store.remove_rule(&p) {
                    Ok(_) => {
                        self.operator.remove(&p);
                        log::info!("operator rule for {p} expired and was removed");
                    }
                    Err(err) => log::error!("removing the expired operator rule for {p}: {err:#}"),
                }
                // Engine entries it covered come back.
                self.resync_under(p, now);
            }
            if self.held(&p).is_some_and(|h| self.policy.behind(&h, now)) {
                match self.load(&p) {
                    Ok(mut rec) => {
                        if catch_up(&self.policy, &mut rec, now) {
                            self.metrics.stage_changes.inc();
                            if let Err(err) = self.store.put_sender(&rec) {
                                // The stage is a function of the stored times, so a restart
                                // recomputes it.
                                log::error!("storing the new stage of {p}: {err:#}");
                            }
                            self.keep(&rec);
                        }
                    }
                    Err(err) => log::error!("reading the record of {p} for its new stage: {err:#}"),
                }
            }
            let _ = self.sync(p, now); // failures are logged and retried
            self.schedule(p, now);
            self.relabel(p, now);
        }
        self.metrics
            .next_change
            .set(self.next_wakeup().unwrap_or(0));
    }

    /// Serves one control request.
    pub fn handle(&mut self, req: Request, now: i64) -> Reply {
        let op = op_name(&req);
        let reply = self.dispatch(req, now);
        let outcome = if reply.ok {
            "ok"
        } else if reply.usage {
            "usage"
        } else {
            "error"
        };
        self.metrics
            .requests
            .get_or_create(&vec![
                ("op".into(), op.into()),
                ("outcome".into(), outcome.into()),
            ])
            .inc();
        self.metrics
            .next_change
            .set(self.next_wakeup().unwrap_or(0));
        reply
    }

    fn dispatch(&mut self, req: Request, now: i64) -> Reply {
        let changes = matches!(
            req,
            Request::Evidence { .. }
                | Request::Pause { .. }
                | Request::Resume { .. }
                | Request::Forget { .. }
                | Request::PutRule { .. }
                | Request::RemoveRule { .. }
                | Request::Import { .. }
                | Request::RemoveRules { .. }
        );
        if changes {
            if let Some(problem) = self.datapath.problem() {
                return Reply::internal(format!(
                    "{problem}: nothing is enforced, so the change was not made; restart `enforcer run` to attach the datapath again"
                ));
            }
        }
        match req {
            Request::Ping {} => Reply::ok(serde_json::json!({
                "pong": true,
                "state_dir": self.state_dir,
                "senders": self.records.len(),
            })),
            Request::Senders => {
                let mut list = Vec::with_capacity(self.records.len());
                let each = self.store.each_sender(|r| {
                    let op = self.operator_for(&r.prefix, now);
                    list.push(views::view(&self.policy, &r, op.as_ref(), now));
                });
                match each {
                    Ok(()) => Reply::ok(list),
                    Err(e) => Reply::internal(format!("reading the sender records: {e:#}")),
                }
            }
            Request::Sender { target } => match self.find(&target) {
                Ok(p) => self.detail(p, now),
                Err(r) => r,
            },
            Request::Evidence { target, text } => self.evidence(&target, &text, now),
            Request::MtaEvidence {
                addr,
                helo,
                headers,
                source,
            } => self.sighting(
                &Sighting {
                    addr,
                    helo,
                    headers,
                },
                source,
                now,
            ),
            Request::MtaEvidenceBatch { sightings } => {
                let batch: Vec<(Sighting, Channel)> = sightings
                    .into_iter()
                    .map(|m| {
                        (
                            Sighting {
                                addr: m.addr,
                                helo: m.helo,
                                headers: m.headers,
                            },
                            m.source,
                        )
                    })
                    .collect();
                self.sightings(&batch, now)
            }
            Request::ProbeEvidence { addr, transcript } => self.probed(addr, &transcript, now),
            Request::Pause { target, days } => self.modify(&target, now, |pol, rec| {
                pol.pause(rec, days, now).map(|_| ())
            }),
            Request::Resume { target } => {
                self.modify(&target, now, |pol, rec| pol.resume(rec, now).map(|_| ()))
            }
            Request::Forget { target } => self.forget(&target, now),
            Request::PutRule { rule } => self.put_rule(rule, now),
            Request::RemoveRule { prefix } => self.remove_rule(&prefix, now),
            Request::Import {
                verdict,
                expires_at,
                reason,
                list,
                entries,
                packed,
            } => match bulk::prefixes(Some(&entries), packed.as_deref(), "import") {
                Ok(prefixes) => self.import(verdict, expires_at, reason, list, prefixes, now),
                Err(reply) => reply,
            },
            Request::RemoveRules {
                entries,
                packed,
                list,
            } => {
                let prefixes = match (&entries, &packed) {
                    (None, None) => None,
                    _ => match bulk::prefixes(entries.as_deref(), packed.as_deref(), "unset") {
                        Ok(p) => Some(p),
                        Err(reply) => return reply,
                    },
                };
                self.remove_rules(prefixes, list.as_deref(), now)
            }
            // Answered by the runner when the fleet is configured.
            Request::FleetStatus {} => Reply::usage(
                "this daemon is not part of a fleet: add a [fleet] section with redis = \"redis://host:6379/0\" to its configuration",
            ),
            Request::List {
                after,
                prefix,
                source,
                limit,
                list,
            } => self.list_page(
                after,
                &Filter {
                    prefix,
                    source,
                    list,
                },
                limit,
                now,
            ),
            Request::Rules {} => {
                let mut rules: Vec<Rule> = self.operator.values().collect();
                rules.extend(
                    self.applied
                        .keys()
                        .filter(|p| !self.operator.contains_key(p))
                        .filter_map(|p| self.settled(p, now)),
                );
                Reply::ok(rules)
            }
        }
    }

    /// One page of `enforcer list`: operator rules and engine entries after `after`, sorted by
    /// prefix, each with what the kernel holds for it. At most `SCAN` keys are looked at per page, so
    /// a filter that keeps few rows still answers quickly (with fewer rows and a `next`).
    fn list_page(
        &self,
        after: Option<Prefix>,
        filter: &Filter,
        limit: Option<u32>,
        now: i64,
    ) -> Reply {
        const SCAN: usize = 16 * PAGE as usize;
        let limit = limit.unwrap_or(PAGE).clamp(1, PAGE) as usize;
        let start = match (after, filter.prefix) {
            (Some(a), _) => Bound::Excluded(a),
            (None, Some(f)) => Bound::Included(f),
            (None, None) => Bound::Unbounded,
        };
        let range = (start, Bound::Unbounded);
        let mut ops = self.operator.range(range).peekable();
        let mut eng = self.applied.range(range).peekable();
        let mut picked: Vec<(Prefix, Rule)> = Vec::new();
        let mut scanned = 0;
        let mut examined = None;
        let mut next = None;
        loop {
            // Merge the two sorted key sets; the operator rule wins where both have the prefix.
            // An engine entry's rule is computed only once its key is looked at.
            let (p, rule) = match (ops.peek(), eng.peek()) {
                (None, None) => break,
                (Some((a, _)), Some((b, _))) if b < a => eng.next().map(|(p, _)| (*p, None)),
                (Some((a, _)), Some((b, _))) if a == b => {
                    eng.next();
                    ops.next().map(|(p, r)| (*p, Some(r.rule(*p))))
                }
                (Some(_), _) => ops.next().map(|(p, r)| (*p, Some(r.rule(*p)))),
                (None, Some(_)) => eng.next().map(|(p, _)| (*p, None)),
            }
            .expect("peeked");
            if filter.past_end(&p) {
                break;
            }
            if picked.len() == limit || scanned == SCAN {
                // `p` was taken but not looked at: the next page resumes right after the last key
                // that was (on a full page, the last row), so `p` is its first.
                next = examined.or(Some(p));
                break;
            }
            scanned += 1;
            examined = Some(p);
            let rule = match rule {
                Some(r) => r,
                None => match self.settled(&p, now) {
                    Some(r) => r,
                    // Its removal is pending (the retry timer's); the kernel read shows it then.
                    None => continue,
                },
            };
            let source = match rule.source {
                RuleSource::Operator => Source::Operator,
                RuleSource::Engine { .. } => Source::Engine,
            };
            if filter.covers(&p)
                && filter.source.is_none_or(|s| s == source)
                && filter.in_list(rule.list.as_deref())
            {
                picked.push((p, rule));
            }
        }
        let prefixes: Vec<Prefix> = picked.iter().map(|(p, _)| *p).collect();
        let kernel = match self.kernel.lookup(&prefixes) {
            Ok(k) => k,
            Err(e) => return Reply::internal(format!("reading the kernel maps: {e:#}")),
        };
        let clock = Clock::now();
        let mut lines = String::with_capacity(picked.len() * 256);
        for ((p, rule), k) in picked.iter().zip(&kernel) {
            listing::encode_row(
                &mut lines,
                &listing::row(*p, k.as_ref(), Some(rule), &clock),
            );
        }
        let head = PageHead {
            rows: picked.len() as u64,
            next,
        };
        Reply::with_lines(head, lines)
    }

    /// `enforcer sender`'s answer for a held sender, its record read from the store.
    fn detail(&self, p: Prefix, now: i64) -> Reply {
        match self.load(&p) {
            Ok(rec) => Reply::ok(self.detail_of(&rec, now)),
            Err(e) => Reply::internal(format!("{e:#}")),
        }
    }

    fn detail_of(&self, rec: &Record, now: i64) -> views::SenderDetail {
        views::detail(
            &self.policy,
            rec,
            self.operator_for(&rec.prefix, now).as_ref(),
            self.report_only,
            now,
        )
    }

    fn evidence(&mut self, target: &str, text: &str, now: i64) -> Reply {
        let Ok(addr) = target.trim().parse::<IpAddr>() else {
            return Reply::usage(format!(
                "`{target}` is not an IP address; evidence is fed for one sending host (e.g. 192.0.2.7)"
            ));
        };
        // The evidence is about `addr`: only what the server at that address wrote is attributed to it.
        let class = match classify_connecting(text.as_bytes(), addr, today(now), &self.overrides) {
            Ok(c) => c,
            Err(e) => {
                self.count_evidence("cli", "unreadable");
                return Reply::usage(e.to_string());
            }
        };
        match self.feed(addr, &class, "cli", now) {
            Ok(key) => self.detail(key, now),
            Err(e) => Reply::internal(e),
        }
    }

    /// What the greeting probe read from `addr` (banner and EHLO response): only the server there
    /// wrote it, so it is attributed to `addr`. The classifier rates greeting and keyword evidence
    /// below a Received header with a build, so `enforcement.min_confidence` decides whether it is
    /// enough to enforce on.
    fn probed(&mut self, addr: IpAddr, transcript: &str, now: i64) -> Reply {
        let class =
            match classify_connecting(transcript.as_bytes(), addr, today(now), &self.overrides) {
                Ok(c) => c,
                Err(e) => {
                    self.count_evidence("probe", "unreadable");
                    return Reply::usage(e.to_string());
                }
            };
        match self.feed(addr, &class, "probe", now) {
            Ok(key) => Reply::ok(serde_json::json!({ "sender": key })),
            Err(e) => {
                log::error!("probe evidence for {addr}: {e}");
                Reply::internal(e)
            }
        }
    }

    /// Evidence the milter or the policy service saw for a connecting address. Input that names no
    /// mail server at all (no Received field, an empty HELO) is counted and dropped.
    pub fn sighting(&mut self, s: &Sighting, source: Channel, now: i64) -> Reply {
        let Some(class) = crate::evidence::attribute(s, today(now), &self.overrides) else {
            self.count_evidence(source.id(), "unreadable");
            return Reply::usage(format!(
                "nothing from {} names a mail server (no Received field, HELO or banner the classifier reads)",
                s.addr
            ));
        };
        match self.feed(s.addr, &class, source.id(), now) {
            Ok(key) => Reply::ok(serde_json::json!({ "sender": key })),
            Err(e) => {
                log::error!("evidence from the MTA for {}: {e}", s.addr);
                Reply::internal(e)
            }
        }
    }

    /// Many sightings in one engine turn (what the MTA listeners hand over): each is classified and
    /// recorded in arrival order, so every finding is counted, but the records they touch are
    /// stored in one transaction and each touched sender is written to the kernel once.
    pub fn sightings(&mut self, batch: &[(Sighting, Channel)], now: i64) -> Reply {
        let day = today(now);
        let mut readable = Vec::with_capacity(batch.len());
        for (s, source) in batch {
            match crate::evidence::attribute(s, day, &self.overrides) {
                Some(class) => readable.push((s.addr, class, source.id())),
                None => self.count_evidence(source.id(), "unreadable"),
            }
        }
        match self.feed_all(&readable, now) {
            Ok(keys) => Reply::ok(serde_json::json!({
                "sightings": batch.len(),
                "unreadable": batch.len() - readable.len(),
                "senders": keys,
            })),
            Err(e) => {
                log::error!("evidence from the MTA ({} sightings): {e}", readable.len());
                Reply::internal(e)
            }
        }
    }

    /// Records a classification for `addr` and applies what it changes.
    fn feed(
        &mut self,
        addr: IpAddr,
        class: &crate::classify::Classification,
        source: &str,
        now: i64,
    ) -> Result<Prefix, String> {
        let keys = self.feed_all(&[(addr, class.clone(), source)], now)?;
        Ok(keys[0])
    }

    /// Records classifications (address, classification, source) in order and applies what they
    /// change: durable first (one store transaction for every touched record; if it fails nothing
    /// changed), then the kernel, once per touched sender. Returns the touched senders in the
    /// order they were first touched.
    fn feed_all(
        &mut self,
        items: &[(IpAddr, crate::classify::Classification, &str)],
        now: i64,
    ) -> Result<Vec<Prefix>, String> {
        let mut evidence = Vec::with_capacity(items.len());
        for (_, class, _) in items {
            evidence.push(evidence_of(class, now)?);
        }
        // The records these senders already have, read in one transaction.
        let mut held: Vec<Prefix> = items
            .iter()
            .map(|(addr, _, _)| self.policy.aggregation.prefix_for(*addr))
            .filter(|k| self.records.contains_key(k))
            .collect();
        held.sort_unstable();
        held.dedup();
        let mut stored: HashMap<Prefix, Record> = match self.store.senders_of(&held) {
            Ok(recs) => held
                .iter()
                .copied()
                .zip(recs)
                .filter_map(|(k, r)| Some((k, r?)))
                .collect(),
            Err(err) => {
                return Err(format!(
                    "could not read the stored records (nothing changed): {err:#}"
                ))
            }
        };
        let mut staged: HashMap<Prefix, Record> = HashMap::new();
        let mut order: Vec<Prefix> = Vec::new();
        let mut outcomes = Vec::with_capacity(items.len());
        for ((addr, _, source), ev) in items.iter().zip(evidence) {
            let key = self.policy.aggregation.prefix_for(*addr);
            let before = match staged.remove(&key) {
                Some(r) => Some(r),
                None => {
                    order.push(key);
                    stored.remove(&key)
                }
            };
            let was = before.as_ref().map(|r| self.policy.stage_at(r, now));
            let mut rec = self.policy.observe(before, *addr, ev, now);
            catch_up(&self.policy, &mut rec, now);
            let is = self.policy.stage_at(&rec, now);
            let outcome = match (was.and_then(|w| w.stage()), is) {
                (_, Standing::AllowListed) => "allow-listed",
                (None, Standing::Enforcing { .. }) => "entered",
                (Some(_), Standing::Clear) => "left",
                _ => "unchanged",
            };
            outcomes.push((*addr, key, *source, outcome));
            staged.insert(key, rec);
        }
        if let Err(err) = self.store.put_senders(order.iter().map(|k| &staged[k])) {
            let keys: Vec<String> = order.iter().map(|k| k.to_string()).collect();
            return Err(format!(
                "could not store the record for {} (nothing changed): {err:#}",
                keys.join(", ")
            ));
        }
        self.log_outcomes(&outcomes);
        for (_, class, _) in items {
            self.metrics
                .classified
                .get_or_create(&vec![
                    ("product".to_string(), class.product.id().to_string()),
                    ("status".to_string(), class.status.id().to_string()),
                ])
                .inc();
        }
        for key in &order {
            let rec = staged.remove(key).expect("staged above");
            let cleared =
                self.records.get(key).is_some_and(|c| c.in_episode()) && rec.episode.is_none();
            self.touch(Touched::Sender {
                prefix: *key,
                cleared,
            });
            self.keep(&rec);
            let _ = self.sync(*key, now); // failures are logged and retried
            self.schedule(*key, now);
            self.relabel(*key, now);
        }
        Ok(order)
    }

    /// Counts every sighting's outcome; logs one line per sender and outcome (a burst of identical
    /// findings from one sender is one line with its count, not one line per message).
    fn log_outcomes(&self, outcomes: &[(IpAddr, Prefix, &str, &str)]) {
        let mut lines: Vec<((Prefix, &str, &str), IpAddr, usize)> = Vec::new();
        for &(addr, key, source, outcome) in outcomes {
            self.count_evidence(source, outcome);
            match lines.iter_mut().find(|l| l.0 == (key, source, outcome)) {
                Some(l) => {
                    l.1 = addr;
                    l.2 += 1;
                }
                None => lines.push(((key, source, outcome), addr, 1)),
            }
        }
        for ((key, source, outcome), addr, n) in lines {
            if n == 1 {
                log::info!("evidence ({source}) for {addr} ({key}): {outcome}");
            } else {
                log::info!("evidence ({source}) for {addr} ({key}): {outcome} ({n} sightings)");
            }
        }
    }

    /// `source`: `cli` for the control socket (`enforcer evidence`), else the MTA channel's name.
    fn count_evidence(&self, source: &str, outcome: &str) {
        self.metrics
            .evidence
            .get_or_create(&EngineMetrics::evidence_label(source, outcome))
            .inc();
    }

    /// Applies an operator change to a record: durable first, then kernel.
    fn modify(
        &mut self,
        target: &str,
        now: i64,
        f: impl FnOnce(&Policy, &mut Record) -> Result<(), crate::policy::PolicyError>,
    ) -> Reply {
        let p = match self.find(target) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let mut rec = match self.load(&p) {
            Ok(rec) => rec,
            Err(e) => return Reply::internal(format!("{e:#} (nothing changed)")),
        };
        catch_up(&self.policy, &mut rec, now);
        if let Err(e) = f(&self.policy, &mut rec) {
            return Reply::usage(e.to_string());
        }
        if let Err(err) = self.store.put_sender(&rec) {
            return Reply::internal(format!(
                "could not store the change for {p} (nothing changed): {err:#}"
            ));
        }
        self.keep(&rec);
        self.touch(Touched::Sender {
            prefix: p,
            cleared: false,
        });
        let _ = self.sync(p, now); // failures are logged and retried
        self.schedule(p, now);
        self.relabel(p, now);
        Reply::ok(self.detail_of(&rec, now))
    }

    fn forget(&mut self, target: &str, now: i64) -> Reply {
        let p = match self.find(target) {
            Ok(p) => p,
            Err(r) => return r,
        };
        if let Err(err) = self.store.remove_sender(&p) {
            return Reply::internal(format!(
                "could not delete the record for {p} (nothing changed): {err:#}"
            ));
        }
        self.drop_record(&p);
        self.touch(Touched::Forgot { prefix: p });
        let _ = self.sync(p, now); // failures are logged and retried
        self.schedule(p, now);
        self.relabel(p, now);
        log::info!("forgot sender {p}");
        Reply::ok(serde_json::json!({ "forgotten": p }))
    }

    fn put_rule(&mut self, rule: serde_json::Value, now: i64) -> Reply {
        let mut rule: Rule = match serde_json::from_value(rule) {
            Ok(r) => r,
            Err(e) => return Reply::usage(format!("bad rule: {e}")),
        };
        rule.source = RuleSource::Operator;
        if let Err(e) = rule.validate() {
            return Reply::usage(e);
        }
        if notice_of(&rule).is_some() && !self.notice_channel {
            return Reply::usage(format!(
                "{}: a notice throttle lets SYNs through so the MTA can tell the sender why, but this daemon serves no notice channel: run it with --milter, --policy or --notice-responder (or [milter]/[policy] listen, [notice] responder in its config), or throttle without --notice",
                rule.prefix
            ));
        }
        if let Err(err) = self.store.put_rule(&rule) {
            return Reply::internal(format!(
                "could not store the rule for {} (nothing changed): {err:#}",
                rule.prefix
            ));
        }
        let p = rule.prefix;
        let before = self.operator.insert(p, rule.clone());
        let kernel = self.sync(p, now);
        if let Err(WriteFailure { full: true, msg }) = &kernel {
            // What does not fit is refused, as the CLI does without a daemon: nothing stays stored.
            let undo = match &before {
                Some(old) => self.store.put_rule(old),
                None => self.store.remove_rule(&p).map(|_| ()),
            };
            match before {
                Some(old) => self.operator.insert(p, old),
                None => self.operator.remove(&p),
            };
            if let Err(u) = undo {
                log::error!("could not take the refused rule for {p} out of the store: {u:#}");
            }
            self.schedule(p, now);
            self.relabel(p, now);
            return Reply::internal(msg.clone());
        }
        self.touch(Touched::Rule { prefix: p });
        self.schedule(p, now);
        self.relabel(p, now);
        self.resync_under(p, now);
        match kernel {
            Ok(()) => Reply::ok(rule),
            Err(e) => Reply::internal(format!(
                "the rule for {p} is stored and will be applied on retry, but writing the kernel entry failed: {}",
                e.msg
            )),
        }
    }

    fn remove_rule(&mut self, prefix: &str, now: i64) -> Reply {
        let p: Prefix = match prefix.parse() {
            Ok(p) => p,
            Err(e) => return Reply::usage(e.to_string()),
        };
        let removed = match self.store.remove_rule(&p) {
            Ok(r) => r,
            Err(err) => {
                return Reply::internal(format!("could not remove the rule for {p}: {err:#}"))
            }
        };
        let had = self.operator.remove(&p);
        self.touch(Touched::Rule { prefix: p });
        let kernel = self.sync(p, now);
        self.schedule(p, now);
        self.relabel(p, now);
        self.resync_under(p, now);
        if let Err(e) = kernel {
            return Reply::internal(format!(
                "the rule for {p} is removed from the store, but the kernel entry could not be updated: {}",
                e.msg
            ));
        }
        Reply::ok(serde_json::json!({
            "removed": removed.or(had),
            "engine_entry": self.settled(&p, now).map(|r| r.verdict.describe()),
        }))
    }

    /// The record a target names: an address (its aggregate, or any record containing it) or a prefix.
    fn find(&self, target: &str) -> Result<Prefix, Reply> {
        let t = target.trim();
        let hit = if let Ok(ip) = t.parse::<IpAddr>() {
            let key = self.policy.aggregation.prefix_for(ip);
            if self.records.contains_key(&key) {
                Some(key)
            } else {
                self.records
                    .keys()
                    .filter(|p| p.contains(ip))
                    .max_by_key(|p| p.len())
                    .copied()
            }
        } else {
            match t.parse::<Prefix>() {
                Ok(p) => self.records.contains_key(&p).then_some(p),
                Err(e) => {
                    return Err(Reply::usage(format!(
                        "`{t}` is not an IP address or prefix: {e}"
                    )))
                }
            }
        };
        hit.ok_or_else(|| {
            Reply::usage(format!(
                "no sender record for {t}; `enforcer senders` lists them, `enforcer evidence {t} FILE` creates one"
            ))
        })
    }

    /// The kernel entry a prefix should have at `now`.
    fn desired_for(&self, p: &Prefix, now: i64) -> Option<Rule> {
        if let Some(r) = self.operator.packed(p).filter(|r| !r.is_expired(now)) {
            return Some(r.rule(*p));
        }
        let rec = self.held(p)?;
        // An operator rule on a covering prefix wins too: a host entry would otherwise be the longest
        // match in the kernel and override, say, an operator block of the whole /24.
        if self.operator_decides(p, now).is_some() {
            return None;
        }
        self.policy.desired_one(&rec, now).map(|d| engine_rule(&d))
    }

    /// The rule of the entry this engine wrote for `p`, when it is still the one it wants: recomputed
    /// from the operator rule or the record, since only a fingerprint of it is kept.
    fn settled(&self, p: &Prefix, now: i64) -> Option<Rule> {
        let fp = *self.applied.get(p)?;
        self.desired_for(p, now).filter(|r| written(r) == fp)
    }

    /// The live operator rule that decides for `p`: one for exactly `p`, else the most specific one
    /// covering it. One map lookup per shorter prefix length, so a million imported rules cost the
    /// same as ten.
    fn operator_for(&self, p: &Prefix, now: i64) -> Option<Rule> {
        self.operator_decides(p, now)
            .and_then(|q| self.operator.get(&q))
    }

    /// The prefix of [`Engine::operator_for`]'s rule.
    fn operator_decides(&self, p: &Prefix, now: i64) -> Option<Prefix> {
        let live = |q: Prefix| {
            self.operator
                .packed(&q)
                .is_some_and(|r| !r.is_expired(now))
                .then_some(q)
        };
        (0..=p.len())
            .rev()
            .find_map(|len| live(Prefix::containing(p.addr(), len)))
    }

    /// Re-applies the engine entries of every sender inside `q` after an operator rule for `q`
    /// changed (only on operator changes, which are rare; never on the timer path).
    fn resync_under(&mut self, q: Prefix, now: i64) {
        let inside: Vec<Prefix> = self
            .records
            .keys()
            .filter(|p| **p != q && q.len() < p.len() && q.contains(p.addr()))
            .copied()
            .collect();
        for p in inside {
            let _ = self.sync(p, now); // failures are logged and retried
            self.schedule(p, now);
            self.publish(p, now);
        }
    }

    /// Makes the kernel entry for one prefix match what it should be; a failure is retried later.
    fn sync(&mut self, p: Prefix, now: i64) -> Result<(), WriteFailure> {
        let want = self.desired_for(&p, now);
        if want.as_ref().map(written) == self.applied.get(&p).copied() {
            return Ok(());
        }
        self.metrics.kernel_writes.inc();
        let res = match &want {
            Some(rule) => self.kernel.upsert(rule),
            None => self.kernel.remove(&p).map(|_| ()),
        };
        match res {
            Ok(()) => {
                match want {
                    Some(rule) => {
                        log::info!("kernel entry {p}: {}", rule.verdict.describe());
                        self.applied.insert(p, written(&rule));
                    }
                    None => {
                        log::info!("kernel entry {p}: removed");
                        self.applied.remove(&p);
                    }
                }
                Ok(())
            }
            Err(err) => {
                self.metrics.kernel_errors.inc();
                let full = err.downcast_ref::<crate::datapath::MapFull>().is_some();
                if full {
                    self.metrics.kernel_map_full.inc();
                }
                if let Some(held) = self.write_errors.allow(now, WRITE_ERROR_LOG_SECS) {
                    log::error!(
                        "updating kernel entry {p}: {err:#}; retrying every {RETRY_SECS}s (at most one such line per {WRITE_ERROR_LOG_SECS}s; {held} held back since the last; see enforcer_engine_kernel_errors_total)"
                    );
                }
                Err(WriteFailure {
                    full,
                    msg: format!("{err:#}"),
                })
            }
        }
    }

    /// Compares up to `budget` of the entries this engine wrote with what the kernel holds,
    /// continuing where the last call stopped, and rewrites any that is missing or different. Once
    /// per full round it also removes kernel entries nobody asked for. Cost per call: `budget`
    /// lookups, plus one walk of the maps per round. Returns how many entries it repaired.
    pub fn self_check(&mut self, now: i64, budget: usize) -> usize {
        use std::ops::Bound::{Excluded, Unbounded};
        self.metrics.self_checks.inc();
        let from = match self.check_cursor {
            Some(p) => Excluded(p),
            None => Unbounded,
        };
        let batch: Vec<Prefix> = self
            .applied
            .range((from, Unbounded))
            .take(budget.max(1))
            .map(|(p, _)| *p)
            .collect();
        let round_done = batch.len() < budget.max(1);
        self.check_cursor = if round_done {
            None
        } else {
            batch.last().copied()
        };
        let mut repaired = 0;
        // An entry not settled yet (a write pending) is its retry timer's.
        let rules: Vec<Rule> = batch.iter().filter_map(|p| self.settled(p, now)).collect();
        let held = match self.kernel.holds_many(&rules) {
            Ok(h) => h,
            Err(err) => {
                log::error!("self-check: reading the kernel entries: {err:#}");
                return 0;
            }
        };
        for (rule, _) in rules.iter().zip(held).filter(|(_, held)| !held) {
            self.metrics.kernel_writes.inc();
            match self.kernel.upsert(rule) {
                Ok(()) => {
                    log::warn!(
                        "self-check: the kernel entry for {} was missing or different; rewrote it ({})",
                        rule.prefix,
                        rule.verdict.describe()
                    );
                    repaired += 1;
                }
                Err(err) => {
                    self.metrics.kernel_errors.inc();
                    log::error!("self-check: rewriting {}: {err:#}", rule.prefix);
                }
            }
        }
        if round_done {
            match self.kernel.prefixes() {
                Ok(all) => {
                    for p in all {
                        // A desired entry not yet written is the retry timer's; only strays go.
                        if self.applied.contains_key(&p) || self.desired_for(&p, now).is_some() {
                            continue;
                        }
                        self.metrics.kernel_writes.inc();
                        match self.kernel.remove(&p) {
                            Ok(_) => {
                                log::warn!("self-check: removed kernel entry {p}, which the store does not have");
                                repaired += 1;
                            }
                            Err(err) => {
                                self.metrics.kernel_errors.inc();
                                log::error!("self-check: removing {p}: {err:#}");
                            }
                        }
                    }
                }
                Err(err) => log::error!("self-check: listing kernel entries: {err:#}"),
            }
        }
        if let Err(err) = self.kernel.settle(false) {
            log::error!("self-check: recomputing the prefix presence filters: {err:#}");
        }
        self.metrics.self_check_repairs.inc_by(repaired as u64);
        repaired
    }

    /// Sets the prefix's single timer to its next change (stage, pause end, operator expiry), or to
    /// a retry when its kernel entry is not what it should be.
    fn schedule(&mut self, p: Prefix, now: i64) {
        let next = self.next_due(p, now);
        if let Some(old) = self.due.remove(&p) {
            self.timers.remove(&(old, p));
        }
        if let Some(at) = next {
            self.due.insert(p, at);
            self.timers.insert((at, p));
        }
    }

    /// When `p` next needs the timer: its next stage or pause end, its operator rule's expiry, or
    /// a retry when its kernel entry is not what it should be.
    fn next_due(&self, p: Prefix, now: i64) -> Option<i64> {
        let mut next = self.held(&p).and_then(|h| self.policy.next_change(&h, now));
        let mut earliest = |t: i64| next = Some(next.map_or(t, |n: i64| n.min(t)));
        if let Some(exp) = self.operator.packed(&p).and_then(|r| r.expires_at()) {
            if exp > now {
                earliest(exp);
            }
        }
        if self.applied.get(&p).copied() != self.desired_for(&p, now).as_ref().map(written) {
            earliest(now + RETRY_SECS);
        }
        next
    }

    /// What the MTA listeners answer for `p`: its engine rule while the kernel should hold one, or
    /// an operator's notice throttle (`{stage}` reads 0 for it); any other operator rule deciding
    /// means no SMTP notice. Senders at the same stage with the same evidence share one notice.
    fn notice(&mut self, p: Prefix, now: i64) -> Option<Arc<Notice>> {
        let rule = self.desired_for(&p, now)?;
        let stage = match rule.source {
            RuleSource::Engine { stage } => {
                self.records.get(&p)?;
                stage
            }
            RuleSource::Operator if notice_of(&rule).is_some() => 0,
            RuleSource::Operator => return None,
        };
        let summary = self.records.get(&p).and_then(|c| c.summary_arc());
        // The fingerprint leaves the prefix out, so it is the same for every sender at this stage.
        let key = (stage, written(&rule), summary);
        Some(self.notices.share(key, |(_, _, summary)| {
            Notice {
                // Shared: the board puts the sender's own prefix in what it hands out.
                rule: Rule {
                    prefix: SHARED,
                    reason: None,
                    created_at: 0,
                    ..rule
                },
                stage,
                build: summary
                    .as_ref()
                    .and_then(|s| s.build.as_deref().map(str::to_string)),
                upgrade_to: summary
                    .as_ref()
                    .and_then(|s| s.upgrade_to.as_deref().map(str::to_string)),
            }
        }))
    }

    /// Publishes `p`'s notice for the MTA listeners.
    fn publish(&mut self, p: Prefix, now: i64) {
        let notice = self.notice(p, now);
        self.board.set(p, notice);
    }

    /// Called after every change of `p`: metrics labels and the listeners' board follow it.
    fn relabel(&mut self, p: Prefix, now: i64) {
        self.publish(p, now);
        self.relabel_only(p, now);
    }

    /// The `enforcer_engine_senders` series `p` counts in follows its standing.
    fn relabel_only(&mut self, p: Prefix, now: i64) {
        let new = self.held(&p).map(|r| {
            let st = self.policy.stage_at(&r, now);
            let state = match st {
                Standing::Clear => "clear",
                Standing::AllowListed => "allow-listed",
                Standing::Enforcing { .. } => "enforcing",
                Standing::Paused { .. } => "paused",
            };
            let stage = st
                .stage()
                .map(|n| (n, action_kind(&self.policy.schedule.stage(n).action)));
            EngineMetrics::sender_label(state, stage)
        });
        // Only a held sender counts; one that is gone was taken off by `drop_record`.
        let (Some(new), Some(old)) = (new, self.records.get(&p).map(|c| c.label)) else {
            return;
        };
        let new = self.label_sets.id(new);
        if new == old {
            return;
        }
        if let Some(set) = self.label_sets.get(old) {
            self.metrics.senders.get_or_create(set).dec();
        }
        if let Some(set) = self.label_sets.get(new) {
            self.metrics.senders.get_or_create(set).inc();
        }
        if let Some(c) = self.records.get_mut(&p) {
            c.label = new;
        }
    }
}

/// What the engine remembers of an entry it wrote: a hash of what the kernel and the policy core
/// act on (verdict, expiry, who made it). Reasons and creation times are the store's; the prefix is
/// the key it is kept under, so every entry of an import has the same fingerprint, hashed once.
fn written(rule: &Rule) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&rule.verdict, rule.expires_at, &rule.source).hash(&mut h);
    h.finish()
}

/// The `stage_action` label of a stage.
fn action_kind(a: &crate::policy::Action) -> &'static str {
    use crate::policy::Action;
    match a {
        Action::Report => "report",
        Action::Windows { .. } => "windows",
        Action::Block => "block",
    }
}

/// Ends pauses whose time is up and moves the stage up to where the clock says; true if changed.
fn catch_up(policy: &Policy, rec: &mut Record, now: i64) -> bool {
    let mut changed = false;
    let ended: Vec<i64> = rec
        .pauses
        .iter()
        .filter(|p| p.ended_at.is_none() && p.until <= now)
        .map(|p| p.until)
        .collect();
    for p in rec
        .pauses
        .iter_mut()
        .filter(|p| p.ended_at.is_none() && p.until <= now)
    {
        p.ended_at = Some(p.until);
    }
    for until in ended {
        if rec.episode.is_some() {
            let stage = policy.stage_at(rec, until).stage().unwrap_or(1);
            rec.log(
                until,
                format!("pause ended; enforcement resumed at stage {stage}"),
            );
        }
        changed = true;
    }
    changed | policy.advance(rec, now).is_some()
}

fn today(now: i64) -> time::Date {
    time::OffsetDateTime::from_unix_timestamp(now)
        .map(|d| d.date())
        .unwrap_or(time::Date::MIN)
}

/// The kernel rule for an engine decision.
pub fn engine_rule(d: &Desired) -> Rule {
    let rst = d.refusal == Refusal::Reject;
    let notice = match d.refusal {
        Refusal::Notice(n) => Some(n),
        Refusal::Drop | Refusal::Reject => None,
    };
    let hour = Span(std::time::Duration::from_secs(3600));
    let verdict = match d.action {
        // A full block that tells the sender why: a block window covering the whole period, so the
        // kernel admits the notice budget and the milter answers 550 (same window maths).
        Action::Block if notice.is_some() => Verdict::Throttle {
            period: hour,
            window: Span::default(),
            phase: Span::default(),
            block_offset: Span::default(),
            block: hour,
            rst: false,
            notice,
        },
        Action::Block if rst => Verdict::Reject,
        Action::Block | Action::Report => Verdict::Drop,
        Action::Windows {
            period,
            throttle,
            block_at,
            block,
        } => Verdict::Throttle {
            period,
            window: throttle,
            phase: Span::default(),
            block_offset: if block.secs() > 0 {
                block_at
            } else {
                Span::default()
            },
            block,
            rst,
            notice,
        },
    };
    Rule {
        prefix: d.prefix,
        verdict,
        expires_at: None,
        reason: Some(d.reason.clone()),
        created_at: d.since,
        source: RuleSource::Engine { stage: d.stage },
        list: None,
    }
}

/// The engine's copy of a classification (through its stable JSON field names).
/// The notice budget of a rule that is a notice throttle.
fn notice_of(rule: &Rule) -> Option<crate::rule::NoticeRate> {
    match rule.verdict {
        Verdict::Throttle { notice, .. } => notice,
        _ => None,
    }
}

fn evidence_of(c: &crate::classify::Classification, now: i64) -> Result<Evidence, String> {
    let v = serde_json::to_value(c).map_err(|e| e.to_string())?;
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    Ok(Evidence {
        seen_at: now,
        product: s("product").unwrap_or_else(|| "unknown".into()),
        version: c.version.clone(),
        build: c.build.clone(),
        label: c.label.clone(),
        status: serde_json::from_value(v.get("status").cloned().unwrap_or_default())
            .unwrap_or(crate::policy::Status::Unknown),
        persistently_vulnerable: c.persistently_vulnerable,
        confidence: c.confidence,
        upgrade_to: c.upgrade_to.clone(),
        findings: c.evidence.iter().map(|e| e.finding.clone()).collect(),
    })
}

fn op_name(r: &Request) -> &'static str {
    match r {
        Request::Ping {} => "ping",
        Request::Senders => "senders",
        Request::Sender { .. } => "sender",
        Request::Evidence { .. } => "evidence",
        Request::MtaEvidence { .. } => "mta_evidence",
        Request::MtaEvidenceBatch { .. } => "mta_evidence_batch",
        Request::ProbeEvidence { .. } => "probe_evidence",
        Request::Pause { .. } => "pause",
        Request::Resume { .. } => "resume",
        Request::Forget { .. } => "forget",
        Request::PutRule { .. } => "put_rule",
        Request::RemoveRule { .. } => "remove_rule",
        Request::Rules {} => "rules",
        Request::Import { .. } => "import",
        Request::RemoveRules { .. } => "remove_rules",
        Request::FleetStatus {} => "fleet_status",
        Request::List { .. } => "list",
    }
}

//! The connection to the fleet's Redis: publishes queued changes, reads other hosts' changes, and
//! resyncs fully when the change log no longer reaches back to where this host stopped.
//!
//! Keys, under `fleet.namespace` (`enforcer` by default):
//! - `<ns>:log`: a stream, the ordered change log (field `c` = one change as JSON), trimmed to
//!   `fleet.stream_max_len` entries;
//! - `<ns>:state:<host>`: one hash per host, field = `sender:<prefix>` / `rule:<prefix>`, value =
//!   the host's current view of it (a change as JSON). The join of every host's hash is the
//!   fleet's state, read by a full resync;
//! - `<ns>:hosts`: hash host -> Unix time last seen;
//! - `<ns>:epoch`: set once per Redis data set; when it changes, Redis lost its data, and every host
//!   publishes everything it knows again.
//!
//! Redis is never on the packet path: this task only talks to the engine through channels. While
//! Redis is unreachable, the engine keeps enforcing and queues its changes in its store.

use super::codec::Change;
use super::metrics::FleetMetrics;
use super::status::Shared;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionInfo, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Longest a blocking read waits for a change before the loop looks around again.
const BLOCK_MS: u64 = 1000;
/// Entries read per round trip.
const READ_COUNT: usize = 1024;
/// Queued changes published per round trip (one MULTI).
const PUBLISH_BATCH: usize = 1024;
/// Records handed to the engine per part of a full resync.
const RESYNC_PART: usize = 4096;
/// Fields asked for per HSCAN round trip of a full resync.
const HSCAN_COUNT: usize = 1000;
/// How often this host says it is alive and reads who else is.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// Wait between reconnect attempts.
const RETRY: Duration = Duration::from_millis(500);
/// Bounds a full resync (SCAN round trips for the hashes, HSCAN round trips per hash).
const MAX_SCAN_ROUNDS: usize = 100_000;

/// Where Redis is.
#[derive(Clone, Debug)]
pub enum Target {
    Direct {
        info: ConnectionInfo,
        /// PEM roots for `rediss://` instead of the system's.
        ca: Option<Vec<u8>>,
    },
    /// Sentinel addresses and the monitored master's name; data connections go to the master's
    /// current address, with `data` (password, db) and, with `tls`, TLS checked against `ca` (or
    /// the system's roots) to the Sentinels and to the master alike.
    Sentinel {
        sentinels: Vec<redis::ConnectionAddr>,
        /// The Sentinels' own password (from their URLs), if they require one.
        sentinel_password: Option<String>,
        master: String,
        data: redis::RedisConnectionInfo,
        tls: bool,
        ca: Option<Vec<u8>>,
    },
}

#[derive(Clone, Debug)]
pub struct LinkConfig {
    pub target: Target,
    pub namespace: String,
    pub name: String,
    pub stream_max_len: usize,
}

/// From the link to the engine.
#[derive(Debug)]
pub enum ToEngine {
    /// A validated change from another host, with its stream id.
    Remote { id: String, change: Box<Change> },
    /// Part of a full resync: records read from the keyspace.
    ResyncPart(Vec<Change>),
    /// A full resync is complete (every part sent); the log continues at `head`.
    Resync { head: String },
    /// Queued changes now in Redis.
    Published(Vec<u64>),
    /// Redis's data epoch; `lost`: it differs from the one seen before (Redis lost its data).
    Epoch { epoch: String, lost: bool },
}

/// From the engine to the link.
#[derive(Debug)]
pub enum ToLink {
    Publish(Vec<(u64, Change)>),
    /// Tombstones expired here: remove them from this host's hash.
    Unpublish(Vec<String>),
}

fn key(ns: &str, what: &str) -> String {
    format!("{ns}:{what}")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `1700000000000-3` as (ms, seq) for ordering; unparsable ids sort first.
fn id_key(id: &str) -> (u64, u64) {
    let (a, b) = id.split_once('-').unwrap_or((id, "0"));
    (a.parse().unwrap_or(0), b.parse().unwrap_or(0))
}

struct Link {
    cfg: LinkConfig,
    to_engine: mpsc::Sender<ToEngine>,
    metrics: FleetMetrics,
    status: Shared,
    pending: BTreeMap<u64, Change>,
    unpublish: Vec<String>,
    last_id: Option<String>,
    epoch: Option<String>,
    caught_up: Instant,
}

/// Where the link starts, as stored: the last stream id applied, the Redis data epoch. (Queued
/// changes come as [`ToLink::Publish`], a window at a time.)
pub struct Resume {
    pub last_id: Option<String>,
    pub epoch: Option<String>,
}

/// Runs the link until the engine side hangs up.
pub async fn run(
    cfg: LinkConfig,
    resume: Resume,
    mut from_engine: mpsc::UnboundedReceiver<ToLink>,
    to_engine: mpsc::Sender<ToEngine>,
    metrics: FleetMetrics,
    status: Shared,
) {
    // rustls needs one process-wide crypto provider; ring builds without cmake or NASM.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut link = Link {
        cfg,
        to_engine,
        metrics,
        status,
        pending: BTreeMap::new(),
        unpublish: Vec::new(),
        last_id: resume.last_id,
        epoch: resume.epoch,
        caught_up: Instant::now(),
    };
    loop {
        let err = link.session(&mut from_engine).await;
        link.metrics.connected.set(0);
        match err {
            Ok(()) => return, // the engine hung up: the daemon is stopping
            Err(e) => {
                let msg = format!("{e}");
                if link
                    .status
                    .with(|s| s.last_error.as_deref() != Some(msg.as_str()))
                {
                    log::warn!("fleet: Redis unreachable ({msg}); enforcing on, queueing changes, retrying");
                }
                link.status.with(|s| {
                    if s.connected {
                        s.since = Some(now_ms() / 1000);
                    }
                    s.connected = false;
                    s.last_error = Some(msg);
                });
            }
        }
        // Keep taking queued changes while waiting.
        let deadline = tokio::time::sleep(RETRY);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                m = from_engine.recv() => match m {
                    Some(m) => link.take(m),
                    None => return,
                }
            }
        }
        link.refresh_lag();
    }
}

impl Link {
    fn take(&mut self, m: ToLink) {
        match m {
            ToLink::Publish(items) => self.pending.extend(items),
            ToLink::Unpublish(keys) => self.unpublish.extend(keys),
        }
    }

    fn refresh_lag(&self) {
        let lag = self
            .status
            .with(|s| s.caught_up)
            .unwrap_or(self.caught_up)
            .elapsed()
            .as_secs_f64();
        self.metrics.lag.set(lag);
        self.status.with(|s| s.lag_seconds = lag);
    }

    async fn client(&self) -> redis::RedisResult<Client> {
        match &self.cfg.target {
            Target::Direct { info, ca: None } => Client::open(info.clone()),
            Target::Direct {
                info,
                ca: Some(pem),
            } => Client::build_with_tls(
                info.clone(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            Target::Sentinel {
                sentinels,
                sentinel_password,
                master,
                data,
                tls,
                ca,
            } => {
                use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
                let mut b = SentinelClientBuilder::new(
                    sentinels.clone(),
                    master,
                    SentinelServerType::Master,
                )?
                .set_client_to_redis_db(data.db());
                if let Some(u) = data.username() {
                    b = b.set_client_to_redis_username(u);
                }
                if let Some(pw) = data.password() {
                    b = b.set_client_to_redis_password(pw);
                }
                if let Some(pw) = sentinel_password {
                    b = b.set_client_to_sentinel_password(pw);
                }
                if *tls {
                    b = b
                        .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
                        .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure);
                    if let Some(pem) = ca {
                        let certs = redis::TlsCertificates {
                            client_tls: None,
                            root_cert: Some(pem.clone()),
                        };
                        b = b
                            .set_client_to_redis_certificates(certs.clone())
                            .set_client_to_sentinel_certificates(certs);
                    }
                }
                b.build()?.async_get_client().await
            }
        }
    }

    async fn connect(client: &Client, block: bool) -> redis::RedisResult<MultiplexedConnection> {
        let response = if block {
            Duration::from_millis(BLOCK_MS + 4000)
        } else {
            Duration::from_secs(5)
        };
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(response));
        client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
    }

    /// One connected session; `Ok` only when the engine hung up.
    async fn session(
        &mut self,
        from_engine: &mut mpsc::UnboundedReceiver<ToLink>,
    ) -> redis::RedisResult<()> {
        let client = tokio::time::timeout(Duration::from_secs(5), self.client())
            .await
            .map_err(|_| timeout("looking up Redis"))??;
        let mut w = Self::connect(&client, false).await?;
        let mut r = Self::connect(&client, true).await?;
        let ns = self.cfg.namespace.clone();
        // The data epoch tells a Redis that lost its data from one that merely restarted.
        let fresh = format!("{}-{}", now_ms(), std::process::id());
        let _: Value = redis::cmd("SET")
            .arg(key(&ns, "epoch"))
            .arg(&fresh)
            .arg("NX")
            .query_async(&mut w)
            .await?;
        let epoch: String = redis::cmd("GET")
            .arg(key(&ns, "epoch"))
            .query_async(&mut w)
            .await?;
        let lost = self.epoch.as_ref().is_some_and(|e| *e != epoch);
        if self.epoch.as_deref() != Some(epoch.as_str()) {
            self.epoch = Some(epoch.clone());
            if self
                .to_engine
                .send(ToEngine::Epoch { epoch, lost })
                .await
                .is_err()
            {
                return Ok(());
            }
        }
        let missed = match &self.last_id {
            None => true,
            Some(last) => lost || trimmed_past(&mut w, &ns, last).await?,
        };
        if missed && self.resync(&mut w).await?.is_none() {
            return Ok(());
        }
        self.metrics.connected.set(1);
        self.caught_up = Instant::now();
        self.status.with(|s| {
            s.connected = true;
            s.since = Some(now_ms() / 1000);
            s.last_error = None;
        });
        log::info!(
            "fleet: connected to Redis as {} (namespace {ns})",
            self.cfg.name
        );
        let mut beat = tokio::time::interval(HEARTBEAT);
        // The reader blocks on its own connection; the writer publishes on the other.
        let mut last_id = self.last_id.clone().unwrap_or_else(|| "0-0".into());
        let rd = Reader {
            ns: ns.clone(),
            name: self.cfg.name.clone(),
            to_engine: self.to_engine.clone(),
            metrics: self.metrics.clone(),
            status: self.status.clone(),
        };
        let result = loop {
            let outcome = {
                let reader = async {
                    // Only a reader that is behind can have the log trimmed under it.
                    let mut behind = false;
                    loop {
                        if behind && trimmed_past(&mut r, &rd.ns, &last_id).await? {
                            return Ok::<_, redis::RedisError>(ReadEnd::Trimmed);
                        }
                        match rd.read(&mut r, &mut last_id).await? {
                            None => return Ok(ReadEnd::HungUp),
                            Some(n) if n < READ_COUNT => {
                                behind = false;
                                rd.caught_up();
                            }
                            Some(_) => behind = true,
                        }
                    }
                };
                tokio::pin!(reader);
                loop {
                    tokio::select! {
                        res = &mut reader => break res,
                        m = from_engine.recv() => match m {
                            Some(m) => {
                                self.take(m);
                                if let Err(e) = self.publish(&mut w).await { break Err(e); }
                            }
                            None => break Ok(ReadEnd::HungUp),
                        },
                        _ = beat.tick() => {
                            if let Err(e) = self.heartbeat(&mut w).await { break Err(e); }
                            if let Err(e) = self.publish(&mut w).await { break Err(e); }
                        }
                    }
                }
            };
            match outcome {
                Ok(ReadEnd::Trimmed) => {
                    log::warn!(
                        "fleet: the log was trimmed past {last_id} while this host caught up; resyncing fully"
                    );
                    match self.resync(&mut w).await {
                        Ok(Some(())) => {
                            last_id = self.last_id.clone().unwrap_or_else(|| "0-0".into());
                        }
                        Ok(None) => break Ok(()),
                        Err(e) => break Err(e),
                    }
                }
                Ok(ReadEnd::HungUp) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.last_id = Some(last_id);
        if rd.caught_up_at().is_some() {
            self.caught_up = rd.caught_up_at().unwrap_or_else(Instant::now);
        }
        result
    }

    /// Reads every host's hash and hands the lot to the engine. `None`: the engine hung up.
    async fn resync(&mut self, w: &mut MultiplexedConnection) -> redis::RedisResult<Option<()>> {
        let ns = self.cfg.namespace.clone();
        // The head first: entries added while the hashes are read are replayed (joins are idempotent).
        let head: Vec<(String, Value)> = {
            let v: Value = redis::cmd("XREVRANGE")
                .arg(key(&ns, "log"))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query_async(w)
                .await?;
            entries(v)
        };
        let head = head
            .first()
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| "0-0".into());
        let pattern = format!("{}:*", key(&ns, "state"));
        let mut cursor: u64 = 0;
        let mut hashes = Vec::new();
        for _ in 0..MAX_SCAN_ROUNDS {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(w)
                .await?;
            hashes.extend(keys);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        hashes.sort();
        hashes.dedup();
        // Read a page of fields at a time and hand the engine a part at a time: a hash of a
        // million records is never one reply, nor one message.
        let mut part = Vec::new();
        let mut total = 0usize;
        for h in &hashes {
            let mut cursor: u64 = 0;
            for _ in 0..MAX_SCAN_ROUNDS {
                let (next, fields): (u64, Vec<(String, Vec<u8>)>) = redis::cmd("HSCAN")
                    .arg(h)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(HSCAN_COUNT)
                    .query_async(w)
                    .await?;
                for (field, value) in fields {
                    match Change::decode(&value, now_ms()) {
                        Ok(c) => part.push(c),
                        Err(e) => self.refuse(&format!("{h} {field}"), &e),
                    }
                }
                if part.len() >= RESYNC_PART {
                    total += part.len();
                    let full = std::mem::take(&mut part);
                    if self
                        .to_engine
                        .send(ToEngine::ResyncPart(full))
                        .await
                        .is_err()
                    {
                        return Ok(None);
                    }
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        total += part.len();
        if !part.is_empty()
            && self
                .to_engine
                .send(ToEngine::ResyncPart(part))
                .await
                .is_err()
        {
            return Ok(None);
        }
        log::info!(
            "fleet: full resync: {total} records from {} hosts; continuing the log at {head}",
            hashes.len()
        );
        self.metrics.resyncs.inc();
        self.status.with(|s| s.resyncs += 1);
        self.last_id = Some(head.clone());
        if self
            .to_engine
            .send(ToEngine::Resync { head })
            .await
            .is_err()
        {
            return Ok(None);
        }
        Ok(Some(()))
    }

    fn refuse(&self, what: &str, e: &super::codec::Refused) {
        refuse(&self.metrics, &self.status, what, e);
    }
}

/// How a session's reading half ended without an error.
enum ReadEnd {
    /// The engine hung up: the daemon is stopping.
    HungUp,
    /// Entries after the last one read were trimmed from the log: a full resync is needed.
    Trimmed,
}

/// True when entries after `last` were trimmed from the log before this host read them.
async fn trimmed_past(
    c: &mut MultiplexedConnection,
    ns: &str,
    last: &str,
) -> redis::RedisResult<bool> {
    let info: redis::RedisResult<BTreeMap<String, Value>> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(key(ns, "log"))
        .query_async(c)
        .await;
    let info = match info {
        Ok(i) => i,
        // No log yet: nothing was trimmed.
        Err(e) if e.code() == Some("ERR") => return Ok(false),
        Err(e) => return Err(e),
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    // XDEL records what it deleted; trimming (MAXLEN) does not.
    if let Some(deleted) = info.get("max-deleted-entry-id").and_then(text) {
        if id_key(last) < id_key(&deleted) {
            return Ok(true);
        }
    }
    // Trimmed (more entries were ever added than are kept) and the oldest one kept is newer
    // than the last one read: entries in between may be gone. When the one just after `last`
    // happens to be the oldest kept this resyncs needlessly, which is only slower.
    let count = |k: &str| match info.get(k) {
        Some(Value::Int(n)) => *n,
        _ => 0,
    };
    // (Before Redis 7 there is no counter: assume trimmed.)
    let trimmed = !info.contains_key("entries-added") || count("entries-added") > count("length");
    let first = match info.get("first-entry") {
        Some(Value::Array(parts)) => parts.first().and_then(text),
        _ => None,
    };
    Ok(trimmed && first.is_some_and(|f| id_key(&f) > id_key(last)))
}

fn refuse(metrics: &FleetMetrics, status: &Shared, what: &str, e: &super::codec::Refused) {
    metrics.reject(e.label());
    status.with(|s| s.rejected += 1);
    log::warn!("fleet: refused a change from Redis ({what}): {e}");
}

/// The reading half of a session (its own connection, blocking reads).
struct Reader {
    ns: String,
    name: String,
    to_engine: mpsc::Sender<ToEngine>,
    metrics: FleetMetrics,
    status: Shared,
}

impl Reader {
    fn refuse(&self, what: &str, e: &super::codec::Refused) {
        refuse(&self.metrics, &self.status, what, e);
    }

    fn caught_up(&self) {
        self.metrics.lag.set(0.0);
        self.status.with(|s| {
            s.lag_seconds = 0.0;
            s.caught_up = Some(Instant::now());
        });
    }

    fn caught_up_at(&self) -> Option<Instant> {
        self.status.with(|s| s.caught_up)
    }

    /// One blocking read of the log. `None`: the engine hung up; else the number of entries read.
    async fn read(
        &self,
        r: &mut MultiplexedConnection,
        last_id: &mut String,
    ) -> redis::RedisResult<Option<usize>> {
        let v: Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(BLOCK_MS)
            .arg("STREAMS")
            .arg(key(&self.ns, "log"))
            .arg(last_id.as_str())
            .query_async(r)
            .await?;
        let batch = match v {
            Value::Nil => Vec::new(),
            Value::Array(streams) => streams
                .into_iter()
                .flat_map(|s| match s {
                    Value::Array(mut kv) if kv.len() == 2 => {
                        entries(kv.pop().unwrap_or(Value::Nil))
                    }
                    _ => Vec::new(),
                })
                .collect(),
            Value::Map(streams) => streams.into_iter().flat_map(|(_, e)| entries(e)).collect(),
            _ => Vec::new(),
        };
        let n = batch.len();
        for (id, fields) in batch {
            *last_id = id.clone();
            let raw = match fields {
                Value::Array(f) => f
                    .chunks(2)
                    .find(|c| matches!(&c[0], Value::BulkString(k) if k == b"c"))
                    .and_then(|c| match c.get(1) {
                        Some(Value::BulkString(b)) => Some(b.clone()),
                        _ => None,
                    }),
                _ => None,
            };
            let Some(raw) = raw else {
                self.refuse(
                    &id,
                    &super::codec::Refused::Malformed("no field `c`".into()),
                );
                continue;
            };
            match Change::decode(&raw, now_ms()) {
                Ok(c) if c.origin == self.name => {
                    // Our own change, already applied here; remembered as read.
                    self.status.with(|s| s.last_id = Some(id.clone()));
                }
                Ok(change) => {
                    if self
                        .to_engine
                        .send(ToEngine::Remote {
                            id: id.clone(),
                            change: Box::new(change),
                        })
                        .await
                        .is_err()
                    {
                        return Ok(None);
                    }
                }
                Err(e) => self.refuse(&id, &e),
            }
        }
        if n > 0 {
            self.status.with(|s| s.last_id = Some(last_id.clone()));
        }
        Ok(Some(n))
    }
}

impl Link {
    /// Publishes queued changes in batches: each one goes to the log and to this host's hash in
    /// one MULTI, and is only then taken off the durable queue.
    async fn publish(&mut self, w: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let ns = self.cfg.namespace.clone();
        let mine = key(&ns, &format!("state:{}", self.cfg.name));
        if !self.unpublish.is_empty() {
            let _: Value = redis::cmd("HDEL")
                .arg(&mine)
                .arg(&self.unpublish)
                .query_async(w)
                .await?;
            self.unpublish.clear();
        }
        while !self.pending.is_empty() {
            let batch: Vec<(u64, String, String)> = self
                .pending
                .iter()
                .take(PUBLISH_BATCH)
                .map(|(seq, c)| (*seq, c.item.key(), c.encode()))
                .collect();
            let mut pipe = redis::pipe();
            pipe.atomic();
            for (_, field, json) in &batch {
                pipe.cmd("XADD")
                    .arg(key(&ns, "log"))
                    .arg("MAXLEN")
                    .arg(self.cfg.stream_max_len)
                    .arg("*")
                    .arg("c")
                    .arg(json)
                    .ignore();
                pipe.cmd("HSET").arg(&mine).arg(field).arg(json).ignore();
            }
            let _: Value = pipe.query_async(w).await?;
            let seqs: Vec<u64> = batch.iter().map(|(s, _, _)| *s).collect();
            for s in &seqs {
                self.pending.remove(s);
            }
            self.metrics.sent.inc_by(seqs.len() as u64);
            self.status.with(|s| s.sent += seqs.len() as u64);
            if self
                .to_engine
                .send(ToEngine::Published(seqs))
                .await
                .is_err()
            {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Says this host is alive and reads when the others were last seen.
    async fn heartbeat(&self, w: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let hosts = key(&self.cfg.namespace, "hosts");
        let now = (now_ms() / 1000) as i64;
        let _: Value = redis::cmd("HSET")
            .arg(&hosts)
            .arg(&self.cfg.name)
            .arg(now)
            .query_async(w)
            .await?;
        let all: Vec<(String, String)> = redis::cmd("HGETALL").arg(&hosts).query_async(w).await?;
        let seen: Vec<(String, i64)> = all
            .into_iter()
            .filter(|(h, _)| super::codec::check_name(h).is_ok())
            .filter_map(|(h, t)| Some((h, t.parse().ok()?)))
            .collect();
        self.status.with(|s| s.hosts = seen);
        Ok(())
    }
}

/// Stream entries `[[id, [field, value, ...]], ...]` as (id, fields).
fn entries(v: Value) -> Vec<(String, Value)> {
    let Value::Array(list) = v else {
        return Vec::new();
    };
    list.into_iter()
        .filter_map(|e| match e {
            Value::Array(mut pair) if pair.len() == 2 => {
                let fields = pair.pop()?;
                let id = match pair.pop()? {
                    Value::BulkString(b) => String::from_utf8(b).ok()?,
                    Value::SimpleString(s) => s,
                    _ => return None,
                };
                Some((id, fields))
            }
            _ => None,
        })
        .collect()
}

fn timeout(what: &str) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what} timed out"),
    ))
}

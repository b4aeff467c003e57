//! Milter benchmark (root): messages/s through one real Postfix instance with and without enforcer's
//! milter, in the same run, and the daemon's CPU time per message.
//!
//! Postfix (its own instance, tests/src/postfix.rs) listens in a server namespace next to `enforcer
//! run --milter inet:127.0.0.1:8895` (default schedule: the sender is detected and reported, never
//! refused, so every message goes the whole way). SMTP clients in a client namespace send one message
//! per connection (EHLO, MAIL, RCPT, DATA, QUIT), each carrying an Exchange 2013 Received field
//! written by the sending host, so the milter classifies every message. Rounds alternate without
//! and with the milter (`smtpd_milters` set and cleared with `postconf -e` + `postfix reload`), so a
//! load change on a shared machine hits both; each round waits until Postfix has delivered (discarded)
//! every accepted message before the next one starts. The daemon's CPU is read from
//! /proc/PID/stat (utime + stime) around the rounds with the milter.
//!
//! Prints a Markdown section on stdout (spliced into BENCHMARKS.md by `cargo xtask bench milter`);
//! progress on stderr.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use tests::netns::{Topology, CLIENT_V4, SERVER_V4, SERVER_V6};
use tests::postfix::{milter_settings, Postfix, DOMAIN};
use tests::process::{Daemon, Dirs};

const MILTER: &str = "inet:127.0.0.1:8895";
/// Messages per round and concurrent SMTP clients.
const MESSAGES: usize = 1000;
const CLIENTS: usize = 8;
const ROUNDS: usize = 5;
const TARGET_RATIO: f64 = 0.90;

fn main() -> ExitCode {
    tests::process::bench_main("bench-milter", run)
}

/// One SMTP reply: its code and whole text.
fn reply(r: &mut BufReader<TcpStream>) -> Result<(u16, String)> {
    let mut text = String::new();
    // A multi-line reply has `NNN-` on every line but the last; bounded like any loop here.
    for _ in 0..64 {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            bail!("server closed the connection after {text:?}");
        }
        text.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            return Ok((code, text));
        }
    }
    bail!("reply longer than 64 lines")
}

fn expect(r: &mut BufReader<TcpStream>, want: u16, after: &str) -> Result<()> {
    let (code, text) = reply(r)?;
    if code != want {
        bail!("after {after}: expected {want}, got {text:?}");
    }
    Ok(())
}

/// One message on its own connection.
fn send_one(server: SocketAddr, body: &str) -> Result<()> {
    let s = TcpStream::connect_timeout(&server, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    expect(&mut r, 220, "connect")?;
    w.write_all(b"EHLO EX02.sender.example\r\n")?;
    expect(&mut r, 250, "EHLO")?;
    w.write_all(b"MAIL FROM:<sender@sender.example>\r\n")?;
    expect(&mut r, 250, "MAIL")?;
    w.write_all(format!("RCPT TO:<user@{DOMAIN}>\r\n").as_bytes())?;
    expect(&mut r, 250, "RCPT")?;
    w.write_all(b"DATA\r\n")?;
    expect(&mut r, 354, "DATA")?;
    w.write_all(body.as_bytes())?;
    w.write_all(b".\r\n")?;
    expect(&mut r, 250, "end of data")?;
    w.write_all(b"QUIT\r\n")?;
    let _ = reply(&mut r);
    Ok(())
}

/// Sends `n` messages from `clients` threads in the client namespace; returns the wall time.
fn round(topo: &Topology, n: usize, clients: usize) -> Result<Duration> {
    let server: SocketAddr = format!("{SERVER_V4}:25").parse().unwrap();
    let body = Arc::new(tests::postfix::message(
        &[&format!(
            "Received: from EX01.sender.example (10.1.2.3) by EX02.sender.example ({CLIENT_V4}) with Microsoft SMTP Server (TLS) id 15.0.1497.2; Tue, 1 Dec 2026 10:11:12 +0000"
        )],
        "bench",
    ));
    topo.client.run(move || {
        let start = Instant::now();
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let body = body.clone();
                let count = n / clients + usize::from(c < n % clients);
                std::thread::spawn(move || -> Result<()> {
                    for _ in 0..count {
                        send_one(server, &body)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().expect("client thread panicked")?;
        }
        Ok(start.elapsed())
    })
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at `) `.
    let rest = &stat[stat.rfind(')').context("no ) in stat")? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

fn run() -> Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("run as root (namespaces, XDP, Postfix)");
    }
    let topo = Topology::new("bm");
    let dirs = Dirs::new("bm");
    let daemon = Daemon::start(&topo.server, &topo.server_if, &dirs, &["--milter", MILTER]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !daemon.log_text().contains("milter on") {
        if Instant::now() > deadline {
            bail!(
                "the daemon never reported its milter:\n{}",
                daemon.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut no_milter = milter_settings(MILTER);
    no_milter.truncate(1);
    no_milter[0].1.clear();
    let postfix = Postfix::start(&topo.server, "bm", &[SERVER_V4, SERVER_V6], &no_milter);

    let mut delivered = 0usize;
    let mut wait_delivered = |pf: &Postfix, more: usize| -> Result<()> {
        delivered += more;
        if !pf.wait_log("status=sent", delivered, Duration::from_secs(300)) {
            bail!("Postfix did not deliver {delivered} messages within 5 min");
        }
        Ok(())
    };
    // Warm-up: Postfix's first smtpd/cleanup processes, the daemon's first classification.
    eprintln!("bench-milter: warm-up");
    postfix.set(&milter_settings(MILTER));
    round(&topo, 200, CLIENTS)?;
    wait_delivered(&postfix, 200)?;

    let (mut without, mut with, mut cpu) = (Vec::new(), Vec::new(), 0.0);
    for r in 0..ROUNDS {
        postfix.set(&no_milter);
        std::thread::sleep(Duration::from_secs(2));
        let t = round(&topo, MESSAGES, CLIENTS)?;
        wait_delivered(&postfix, MESSAGES)?;
        without.push(MESSAGES as f64 / t.as_secs_f64());

        postfix.set(&milter_settings(MILTER));
        std::thread::sleep(Duration::from_secs(2));
        let before = cpu_seconds(daemon.pid())?;
        let t = round(&topo, MESSAGES, CLIENTS)?;
        wait_delivered(&postfix, MESSAGES)?;
        // After delivery: the inbox's last batch has reached the engine by then.
        cpu += cpu_seconds(daemon.pid())? - before;
        with.push(MESSAGES as f64 / t.as_secs_f64());
        eprintln!(
            "bench-milter: round {}: without {:.0} msg/s, with {:.0} msg/s",
            r + 1,
            without[r],
            with[r]
        );
    }
    // Evidence handed to the engine plus evidence dropped because the inbox was full: every
    // message the milter saw. The last batch is handed over after the inbox's linger.
    std::thread::sleep(Duration::from_secs(1));
    let m = tests::process::scrape(&topo.server, daemon.metrics_addr());
    let value = |name: &str| {
        m.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let handed = value("enforcer_milter_sightings_total");
    let dropped = value("enforcer_milter_sightings_dropped_total");
    let expected = (200 + ROUNDS * MESSAGES) as f64;
    // An smtpd started before a reload may still take one connection with the old settings.
    if handed + dropped < expected - (2 * ROUNDS * CLIENTS) as f64 {
        bail!(
            "the milter saw {} messages, expected {expected}: it was not in the path",
            handed + dropped
        );
    }
    drop(postfix);
    drop(daemon);

    let (wo, wi) = (median(&without), median(&with));
    let ratio = wi / wo;
    let us_per_msg = cpu / (ROUNDS * MESSAGES) as f64 * 1e6;
    print_markdown(
        &without,
        &with,
        ratio,
        us_per_msg,
        dropped / (handed + dropped),
    );
    Ok(())
}

/// The middle value (the mean of the middle two for an even count).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn print_markdown(without: &[f64], with: &[f64], ratio: f64, us_per_msg: f64, dropped: f64) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = tests::machine::cpu_model();
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split(' ').next().map(str::to_string))
        .unwrap_or_default();
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let postfix = std::process::Command::new("postconf")
        .args(["-d", "-h", "mail_version"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let verdict = if ratio >= TARGET_RATIO {
        "met"
    } else {
        "**missed**"
    };
    println!("## Milter (Postfix smtpd_milters, `cargo xtask bench milter`)\n");
    println!(
        "Messages/s accepted by one Postfix {postfix} instance (own config and queue, discard delivery) from \
         {CLIENTS} concurrent SMTP clients in another namespace, one message per connection, {MESSAGES} \
         messages per round, {ROUNDS} rounds alternating without and with `smtpd_milters = {MILTER}` in the \
         same run (each round waits for Postfix to deliver everything before the next). Every message carries \
         an Exchange 2013 Received field written by the sending host, so the milter classifies each one; \
         the default schedule only reports the sender, so no message is refused. Milter CPU is the daemon's \
         utime + stime (/proc/PID/stat) over the rounds with the milter, divided by their messages; the ratio \
         compares the medians.\n"
    );
    println!("| | msg/s per round | median | vs without | target |");
    println!("|---|---:|---:|---:|---|");
    println!(
        "| without milter | {} | {:.0} | 100% | |",
        fmt(without),
        median(without)
    );
    println!(
        "| with milter | {} | {:.0} | {:.1}% | >= {:.0}%: {verdict} |",
        fmt(with),
        median(with),
        ratio * 100.0,
        TARGET_RATIO * 100.0
    );
    println!("\nMilter CPU: {us_per_msg:.0} µs per message (daemon, user + system).");
    println!(
        "Evidence dropped because the engine was behind and the milter's inbox was full: {:.1}% of the \
         messages (counted in `enforcer_milter_sightings_dropped_total`; the mail itself is never held).\n",
        dropped * 100.0
    );
    println!(
        "Machine: {cpu}, {cores} CPUs; kernel {kernel}; {date}; 1-minute load average {load} at the end \
         (the bench's own Postfix, swaks and daemon included). The rounds alternate so both sides see the \
         same machine; on a VM shared with other work the absolute rates drop and the ratio gets noisier."
    );
}

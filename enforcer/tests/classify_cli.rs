//! `enforcer classify` end to end through the binary: input from a file and from stdin, text and JSON
//! output, exit status 2 on unreadable input or bad arguments.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn enforcer(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_enforcer"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("enforcer binary starts");
    let mut pipe = child.stdin.take().expect("stdin is piped");
    // The binary may exit before reading (bad arguments, a file argument): a broken pipe is fine.
    let _ = pipe.write_all(stdin.unwrap_or_default());
    drop(pipe);
    child.wait_with_output().expect("enforcer exits")
}

// Folded lines keep their leading white space: a plain multi-line literal, no `\` line joins.
const HEADERS: &str = "Received: from mail.sender.example (mail.sender.example [203.0.113.5])
	by mx.receiver.example (Postfix) with ESMTPS id 4VtX
	for <u@receiver.example>; Tue, 4 Jun 2024 10:11:14 +0000 (UTC)
Received: from EX01.corp.sender.example (10.1.2.3) by mail.sender.example
 (10.1.2.4) with Microsoft SMTP Server (version=TLS1_2,
 cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.1.2507.39 via Frontend
 Transport; Tue, 4 Jun 2024 10:11:12 +0000
Subject: x

";

#[test]
fn json_from_stdin() {
    let out = enforcer(
        &["classify", "--json", "--as-of", "2025-10-15", "-"],
        Some(HEADERS.as_bytes()),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON object");
    assert_eq!(v["product"], "exchange");
    assert_eq!(v["version"], "2016");
    assert_eq!(v["build"], "15.1.2507.39");
    assert_eq!(v["label"], "Exchange Server 2016 CU23 Apr24HU");
    assert_eq!(v["status"], "end-of-life");
    assert_eq!(v["persistently_vulnerable"], true);
    assert!(v["confidence"].as_f64().unwrap() > 0.9);
    let ev = v["evidence"].as_array().unwrap();
    assert!(ev
        .iter()
        .all(|e| e["kind"].is_string() && e["text"].is_string() && e["finding"].is_string()));
}

#[test]
fn text_from_file() {
    let dir = std::env::temp_dir().join(format!("enforcer-classify-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("transcript.txt");
    std::fs::write(
        &path,
        "S: 220 mx.example.org ESMTP Exim 4.96 #2 Mon, 01 Jan 2024 10:00:00 +0000\r\n",
    )
    .unwrap();
    let out = enforcer(
        &["classify", path.to_str().unwrap(), "--as-of", "2024-06-01"],
        None,
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("Exim 4.96: unknown as of 2024-06-01"),
        "{text}"
    );
    assert!(text.contains("[banner] greeting names Exim 4.96"), "{text}");
}

#[test]
fn unreadable_input_and_bad_arguments_exit_2() {
    let out = enforcer(&["classify"], Some(b"just some text\nnothing smtp here\n"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no SMTP evidence"));
    let out = enforcer(&["classify", "/nonexistent/enforcer/input"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot open /nonexistent/enforcer/input")
    );
    let out = enforcer(
        &["classify", "--as-of", "yesterday", "-"],
        Some(HEADERS.as_bytes()),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("YYYY-MM-DD"));
    let out = enforcer(
        &["classify", "--support-until", "2020=2030-01-01", "-"],
        Some(HEADERS.as_bytes()),
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn support_override_extends_end_of_life() {
    let out = enforcer(
        &[
            "classify",
            "--json",
            "--as-of",
            "2025-10-15",
            "--support-until",
            "2016=2026-10-13",
        ],
        Some(HEADERS.as_bytes()),
    );
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // No longer end of life; Apr24HU is far behind the updates shipped by then.
    assert_eq!(v["status"], "outdated");
}

#[test]
fn connecting_ip_attributes_only_that_servers_fields() {
    // A Postfix relay at 203.0.113.5 in front of Exchange: anchored to the relay, no Exchange build.
    let relay = HEADERS.replace(
        "Received: from EX01.corp.sender.example (10.1.2.3) by mail.sender.example\n (10.1.2.4)",
        "Received: from ex.corp.sender.example (ex.corp.sender.example [10.1.2.9])\n\tby mail.sender.example (Postfix) with ESMTP id 7A1B2; Tue, 4 Jun 2024 10:11:13 +0000\nReceived: from EX01.corp.sender.example (10.1.2.3) by ex.corp.sender.example\n (10.1.2.4)",
    );
    assert_ne!(relay, HEADERS);
    let json = |args: &[&str]| {
        let out = enforcer(args, Some(relay.as_bytes()));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("one JSON object")
    };
    let v = json(&[
        "classify",
        "--json",
        "--as-of",
        "2025-10-15",
        "--connecting-ip",
        "203.0.113.5",
        "-",
    ]);
    assert_eq!(v["product"], "postfix");
    assert_eq!(v["build"], serde_json::Value::Null);
    assert_eq!(v["persistently_vulnerable"], false);
    // Without the anchor the header block is the sending organisation's: its Exchange is rated.
    let v = json(&["classify", "--json", "--as-of", "2025-10-15", "-"]);
    assert_eq!(v["build"], "15.1.2507.39");
    let out = enforcer(
        &["classify", "--connecting-ip", "not-an-ip", "-"],
        Some(relay.as_bytes()),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--connecting-ip"));
}

#[test]
fn operator_catalog_check_and_use() {
    let dir = std::env::temp_dir().join(format!("enforcer-cli-catalog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("exchange-builds.csv");
    std::fs::write(
        &good,
        "product,version_label,build,release_date,end_of_support\n\
Exchange Server SE,Exchange Server SE RTM Dec26SU,15.2.2562.99,2026-12-08,\n",
    )
    .unwrap();
    let bad = dir.join("bad.csv");
    std::fs::write(
        &bad,
        "product,version_label,build,release_date,end_of_support\nExchange Server SE,x,15.2.2562.99,08/12/2026,\n",
    )
    .unwrap();
    let g = good.display().to_string();
    let b = bad.display().to_string();
    let out = enforcer(&["catalog", "check", &g], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 rows valid (1 new builds"));
    let out = enforcer(&["catalog", "check", &b], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{b}:2: release_date `08/12/2026` is not a date")),
        "{err}"
    );
    // A build newer than the built-in catalog gets its label from the operator's file.
    let h = HEADERS.replace("15.1.2507.39", "15.2.2562.99");
    let label = |extra: &[&str]| {
        let mut args = vec!["classify", "--json", "--as-of", "2026-12-10"];
        args.extend_from_slice(extra);
        args.push("-");
        let out = enforcer(&args, Some(h.as_bytes()));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["label"].clone()
    };
    assert_eq!(label(&[]), serde_json::Value::Null);
    assert_eq!(label(&["--catalog", &g]), "Exchange Server SE RTM Dec26SU");
    let out = enforcer(&["classify", "--catalog", &b, "-"], Some(h.as_bytes()));
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

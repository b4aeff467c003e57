//! `enforcer run` on a damaged or emptied state database stops before touching anything: exit
//! status 2, one line naming the file and the way out (`--reset-state`), no panic. Unprivileged: the
//! store is opened (and refused) before anything needs root.

use std::path::{Path, PathBuf};
use std::process::Command;

struct TmpDir(PathBuf);
impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run_on(state: &Path) -> std::process::Output {
    let pins = state.join("pins");
    Command::new(env!("CARGO_BIN_EXE_enforcer"))
        .args(["run", "--iface", "lo", "--metrics-addr", "127.0.0.1:0"])
        .arg("--state-dir")
        .arg(state)
        .arg("--pin-dir")
        .arg(&pins)
        .arg("--socket")
        .arg(state.join("enforcer.sock"))
        .env("RUST_LOG", "off")
        .output()
        .expect("enforcer binary starts")
}

#[test]
fn run_refuses_an_emptied_or_unreadable_store_naming_it() {
    let dir = TmpDir(std::env::temp_dir().join(format!("enforcer-damaged-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let db = dir.0.join("enforcer.redb");
    let garbage: Vec<u8> = (0..16384u32).map(|i| (i * 7 + 13) as u8).collect();
    for (what, bytes) in [("empty", Vec::new()), ("garbage", garbage)] {
        std::fs::write(&db, &bytes).unwrap();
        let out = run_on(&dir.0);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(
            err.contains(&db.display().to_string()) && err.contains("--reset-state"),
            "{what}: {err}"
        );
        assert!(!err.contains("panicked"), "{what}: {err}");
        assert_eq!(
            std::fs::read(&db).unwrap(),
            bytes,
            "{what}: the file is left as it was"
        );
    }
}

//! A bad database file is an error naming it, never a panic and never an empty store.

use super::*;
use crate::error::UsageError;
use crate::rule::{Rule, RuleSource, Verdict};

struct TmpDir(PathBuf);
impl TmpDir {
    fn new(tag: &str) -> Self {
        let d =
            std::env::temp_dir().join(format!("enforcer-storebad-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TmpDir(d)
    }
}
impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rule(i: u32) -> Rule {
    Rule {
        prefix: format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
            .parse()
            .unwrap(),
        verdict: Verdict::Drop,
        expires_at: None,
        reason: Some(format!("rule number {i} with some text to fill pages")),
        created_at: 1_700_000_000,
        source: RuleSource::Operator,
        list: None,
    }
}

fn usage_text(e: anyhow::Error) -> String {
    assert!(e.downcast_ref::<UsageError>().is_some(), "{e:#}");
    e.to_string()
}

#[test]
fn an_empty_file_is_an_error_naming_it_and_reset_starts_over() {
    let dir = TmpDir::new("empty");
    {
        let s = Store::open(&dir.0).unwrap();
        s.put_rule(&rule(1)).unwrap();
    }
    let file = dir.0.join(DB_FILE);
    std::fs::File::create(&file).unwrap(); // truncates to 0 bytes
    let msg = usage_text(Store::open(&dir.0).err().unwrap());
    assert!(msg.contains(&file.display().to_string()), "{msg}");
    assert!(
        msg.contains("empty") && msg.contains("--reset-state"),
        "{msg}"
    );
    // Still refused the second time: nothing was silently created in its place.
    assert!(Store::open(&dir.0).is_err());
    let aside = Store::reset(&dir.0).unwrap().unwrap();
    assert!(aside.exists() && !file.exists());
    assert!(Store::open(&dir.0).unwrap().rules().unwrap().is_empty());
    assert_eq!(Store::reset(&dir.0).unwrap().map(|_| ()), Some(()));
    assert_eq!(Store::reset(&dir.0).unwrap(), None);
}

fn corrupt(tag: &str, damage: impl Fn(&mut Vec<u8>)) -> String {
    let dir = TmpDir::new(tag);
    {
        let s = Store::open(&dir.0).unwrap();
        for i in 0..20 {
            s.put_rule(&rule(i)).unwrap();
        }
    }
    let file = dir.0.join(DB_FILE);
    let mut bytes = std::fs::read(&file).unwrap();
    damage(&mut bytes);
    std::fs::write(&file, &bytes).unwrap();
    let e = Store::open(&dir.0)
        .and_then(|s| {
            s.rules()?;
            s.senders()?;
            s.put_rule(&rule(99))
        })
        .expect_err("a damaged file is noticed");
    let msg = usage_text(e);
    assert!(msg.contains(&file.display().to_string()), "{msg}");
    assert!(msg.contains("--reset-state"), "{msg}");
    msg
}

/// redb unwraps the UTF-8 of stored strings: a flipped byte inside a rule made it panic. Here it
/// is an error naming the file (exit status 2).
#[test]
fn a_corrupt_value_is_an_error_not_a_panic() {
    let msg = corrupt("value", |bytes| {
        // Every copy (redb keeps older pages around until reused).
        let needle = b"rule number 7 with";
        let hits: Vec<usize> = (0..bytes.len() - needle.len())
            .filter(|&i| &bytes[i..i + needle.len()] == needle)
            .collect();
        assert!(!hits.is_empty(), "the reason is stored as text");
        for at in hits {
            bytes[at + 5] = 0xff;
        }
    });
    assert!(msg.contains("damaged"), "{msg}");
}

#[test]
fn a_corrupt_header_is_an_error_naming_the_file() {
    corrupt("header", |bytes| {
        for (i, b) in bytes.iter_mut().take(4096).enumerate() {
            *b = (i * 7 + 13) as u8;
        }
    });
}

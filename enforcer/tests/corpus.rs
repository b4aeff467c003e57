//! Real-world header blocks and transcripts collected from public sources (`tests/corpus/`, each with its
//! provenance in `manifest.toml`): every sample is classified and its expected product, version, build
//! and status (as of the manifest's date) are asserted, with the rule that decides it written down.

use std::path::Path;

use enforcer::classify::{classify_bytes, classify_connecting, parse_iso, SupportOverrides};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    as_of: String,
    sample: Vec<Sample>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Sample {
    file: String,
    /// Where it was taken from: repository@commit and path, or URL.
    source: String,
    /// Which shape of the classifier issue it exercises.
    shape: String,
    /// Why the expected verdict is right: the rule that decides it.
    rule: String,
    connecting_ip: Option<String>,
    product: String,
    version: Option<String>,
    build: Option<String>,
    status: Option<String>,
}

#[test]
fn every_corpus_sample_classifies_as_expected() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let text = std::fs::read_to_string(dir.join("manifest.toml")).expect("manifest.toml");
    let m: Manifest = toml::from_str(&text).expect("manifest.toml parses");
    let as_of = parse_iso(&m.as_of).expect("as_of is a date");
    let ov = SupportOverrides::new();
    let mut wrong = Vec::new();
    let mut shapes = std::collections::BTreeSet::new();
    for s in &m.sample {
        assert!(
            !s.source.is_empty() && !s.rule.is_empty(),
            "{}: provenance and rule",
            s.file
        );
        shapes.insert(s.shape.split(' ').next().unwrap_or_default().to_string());
        let input = std::fs::read(dir.join(&s.file)).unwrap_or_else(|e| panic!("{}: {e}", s.file));
        let c = match &s.connecting_ip {
            Some(ip) => classify_connecting(&input, ip.parse().expect("connecting_ip"), as_of, &ov),
            None => classify_bytes(&input, as_of, &ov),
        }
        .unwrap_or_else(|e| panic!("{}: {e}", s.file));
        let got = (
            c.product.id().to_string(),
            c.version.clone(),
            c.build.clone(),
            c.status.id().to_string(),
        );
        let want = (
            s.product.clone(),
            s.version.clone().or(if s.version.is_none() {
                c.version.clone()
            } else {
                None
            }),
            s.build.clone(),
            s.status
                .clone()
                .unwrap_or_else(|| c.status.id().to_string()),
        );
        // `version` and `status` are asserted when the manifest gives them; `build` always (absent =
        // no build may be reported).
        if got != want {
            wrong.push(format!(
                "{} ({}): want {want:?}, got {got:?}\n  rule: {}\n  evidence: {:#?}",
                s.file, s.shape, s.rule, c.evidence
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} samples wrong:\n{}",
        wrong.len(),
        m.sample.len(),
        wrong.join("\n")
    );
    // Every shape of the issue has at least one real sample.
    for shape in ["1", "2", "3", "4", "5", "6", "7"] {
        assert!(
            shapes.contains(shape),
            "no corpus sample for shape {shape}: {shapes:?}"
        );
    }
}

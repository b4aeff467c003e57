//! The eBPF object's nested build stays quiet: cargo replays a build script's `cargo:warning` lines on
//! every build, so progress lines there would be printed by every `cargo xtask run`.

use std::path::{Path, PathBuf};

/// `<target>/<profile>/build/enforcer-*/output` files of this test's own build.
fn build_outputs() -> Vec<PathBuf> {
    let exe = std::env::current_exe().unwrap();
    // <target>/<profile>/deps/<test-exe>
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let mut out = Vec::new();
    for e in std::fs::read_dir(profile_dir.join("build"))
        .unwrap()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let output = e.path().join("output");
        if name.starts_with("enforcer-") && !name.starts_with("enforcer-common") && output.exists()
        {
            out.push(output);
        }
    }
    out
}

#[test]
fn ebpf_build_prints_no_progress_lines() {
    let outputs = build_outputs();
    assert!(!outputs.is_empty(), "no build script output found");
    let mut newest = outputs
        .iter()
        .map(|p| (std::fs::metadata(p).unwrap().modified().unwrap(), p))
        .collect::<Vec<_>>();
    newest.sort();
    let (_, path) = newest.last().unwrap();
    let text = std::fs::read_to_string(path).unwrap();
    let noisy: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("cargo:warning="))
        .filter(|l| l.contains("Compiling") || l.contains("Finished") || l.contains("Blocking"))
        .collect();
    assert!(noisy.is_empty(), "{}: {noisy:#?}", path.display());
}

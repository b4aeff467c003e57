//! Builds `enforcer-ebpf` for the BPF target and leaves the object in OUT_DIR, where `src/datapath`
//! embeds it with `include_bytes_aligned!`. Nobody runs a separate eBPF build step.

use anyhow::{anyhow, Context as _};

fn main() -> anyhow::Result<()> {
    let metadata_root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("enforcer crate has no parent directory"))?
        .join("enforcer-ebpf");
    // aya-build watches the eBPF crate only; the kernel programs also compile enforcer-common.
    println!(
        "cargo:rerun-if-changed={}",
        metadata_root.with_file_name("enforcer-common").display()
    );
    let root_dir = metadata_root
        .to_str()
        .context("enforcer-ebpf path is not UTF-8")?;
    // The eBPF crate is built by the pinned stable toolchain; -Z build-std=core needs RUSTC_BOOTSTRAP
    // for that nested build only (see docs/TOOLCHAIN.md). aya-build passes our environment on.
    // SAFETY: build scripts are single-threaded at this point.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    // BPF ISA v3 (32-bit jumps, kernel >= 5.1; XDP frags already need 5.18) instead of the target's
    // default v1, which has no `<`/`<=` jumps and turns every test into a 0/1 register and a second
    // branch: the programs shrink by half and a SYN hit gets a few ns cheaper. aya-build owns the
    // nested build's RUSTFLAGS, so the CPU goes in through the (unstable, hence RUSTC_BOOTSTRAP)
    // profile rustflags, kept off the host build scripts of that build.
    // SAFETY: as above.
    unsafe {
        std::env::set_var("CARGO_UNSTABLE_PROFILE_RUSTFLAGS", "true");
        std::env::set_var("CARGO_PROFILE_RELEASE_RUSTFLAGS", "-Ctarget-cpu=v3");
        std::env::set_var("CARGO_PROFILE_RELEASE_BUILD_OVERRIDE_RUSTFLAGS", "");
    }
    // aya-build turns every line the nested cargo prints into a `cargo:warning`, which cargo then
    // replays on every later build of this crate: keep its progress lines ("Compiling ...") out.
    // Compiler diagnostics and a failure still come through.
    // SAFETY: as above.
    unsafe { std::env::set_var("CARGO_TERM_QUIET", "true") };
    let toolchain = aya_build::Toolchain::Custom(TOOLCHAIN);
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "enforcer-ebpf",
            root_dir,
            ..Default::default()
        }],
        toolchain,
    )
}

/// Must equal `rust-toolchain.toml`'s channel: bpf-linker is built against LLVM 22, which rustc 1.95
/// uses; rustc >= 1.99 moves to LLVM 23.
const TOOLCHAIN: &str = "1.95.0";

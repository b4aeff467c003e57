//! Rebuild when bpf-linker changes, and turn on alu32: with it LLVM emits the 64-bit compare-and-swap
//! the rate limiter needs (`-Z build-std` rustc already passes `--cpu generic`, so `--cpu` can't be
//! repeated; the features flag can).
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
    println!("cargo:rustc-link-arg=--cpu-features=+alu32,+allows-misaligned-mem-access");
}

//! Sets `cfg(x86_kernel)` where the target has what the x86 Q8 kernel uses
//! (`src/runtime/backend/q8.rs`), so the condition is written once.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(x86_kernel)");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let has = |f: &str| features.split(',').any(|x| x == f);
    if arch == "x86_64"
        && ["avx2", "fma", "avx512f", "avx512vnni", "avx512vl"]
            .iter()
            .all(|f| has(f))
    {
        println!("cargo::rustc-cfg=x86_kernel");
    }
}

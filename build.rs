//! Sets `cfg(x86_kernel)` where the target has what the x86 Q8 kernel uses, and
//! `cfg(vector_lanes)` where the lanes kernel has a vector form (simd128, AVX2)
//! (`src/runtime/backend/q8/`), so each condition is written once; and
//! `ANOTE_RUNTIME_HASH`, a hash of the model runtime's sources, which keys the prompt
//! caches a page stores: a build whose kernels round otherwise must not read them.

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(x86_kernel)");
    println!("cargo::rustc-check-cfg=cfg(vector_lanes)");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let has = |f: &str| features.split(',').any(|x| x == f);
    if (arch == "wasm32" && has("simd128")) || (arch == "x86_64" && has("avx2")) {
        println!("cargo::rustc-cfg=vector_lanes");
    }
    if arch == "x86_64"
        && ["avx2", "fma", "avx512f", "avx512vnni", "avx512vl"]
            .iter()
            .all(|f| has(f))
    {
        println!("cargo::rustc-cfg=x86_kernel");
    }
    println!("cargo::rerun-if-changed=src/runtime");
    let mut files = Vec::new();
    sources(Path::new("src/runtime"), &mut files);
    files.sort();
    // FNV-1a over each file's path and bytes: no dependency, and the same on every host.
    let mut hash: u64 = 0xcbf29ce484222325;
    for file in files {
        let bytes = std::fs::read(&file).expect("a runtime source file is readable");
        for b in file.to_string_lossy().bytes().chain(bytes) {
            hash = (hash ^ b as u64).wrapping_mul(0x100000001b3);
        }
    }
    println!("cargo::rustc-env=ANOTE_RUNTIME_HASH={hash:016x}");
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/runtime is readable") {
        let path = entry.expect("a directory entry").path();
        match path.is_dir() {
            true => sources(&path, out),
            false => out.push(path),
        }
    }
}

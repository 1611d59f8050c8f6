//! The CUDA build (scripts/build-cuda.sh) links exactly the CUDA libraries the GPU bundle's
//! launcher looks for, and the default build links none.
//!
//! CI builds the CUDA binary before the tests and sets LANDAUER_REQUIRE_CUDA_BUILD=1, so a
//! missing binary fails there; elsewhere the test skips, loudly, when it was not built.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The CUDA libraries the binary must link: the driver (libcuda, found on the GPU machine),
/// the runtime, cuBLAS and cuRAND (CUDA 13 sonames), and nothing else of CUDA's. (cuBLAS
/// loads cuBLASLt itself; the launcher looks for both.)
const CUDA_LIBS: &[&str] = &[
    "libcuda.so.1",
    "libcudart.so.13",
    "libcublas.so.13",
    "libcurand.so.10",
];

/// System libraries any Rust binary with a C++ dependency may link.
const SYSTEM_LIBS: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libgcc_s.so.1",
    "libstdc++.so.6",
    "libdl.so.2",
    "libpthread.so.0",
    "librt.so.1",
    "ld-linux-x86-64.so.2",
];

fn needed(bin: &Path) -> BTreeSet<String> {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(bin)
        .output()
        .expect("readelf (binutils) runs");
    assert!(out.status.success(), "readelf failed on {}", bin.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| {
            let start = l.find('[')? + 1;
            let end = l.rfind(']')?;
            Some(l[start..end].to_string())
        })
        .collect()
}

fn is_cuda(lib: &str) -> bool {
    [
        "cuda", "cublas", "curand", "nvrtc", "cudnn", "nccl", "cufft", "cusparse",
    ]
    .iter()
    .any(|k| lib.contains(k))
}

#[test]
fn cuda_binary_links_exactly_the_expected_cuda_libraries() {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/cuda/release/landauer");
    if !bin.exists() {
        if std::env::var_os("LANDAUER_REQUIRE_CUDA_BUILD").is_some() {
            panic!(
                "{} is missing: scripts/build-cuda.sh must run before the tests",
                bin.display()
            );
        }
        eprintln!(
            "SKIPPED: {} not built -- run scripts/build-cuda.sh to enable this test",
            bin.display()
        );
        return;
    }
    let libs = needed(&bin);
    let cuda: BTreeSet<String> = libs.iter().filter(|l| is_cuda(l)).cloned().collect();
    let want: BTreeSet<String> = CUDA_LIBS.iter().map(|s| s.to_string()).collect();
    assert_eq!(cuda, want, "CUDA libraries linked by {}", bin.display());
    for l in libs.iter().filter(|l| !is_cuda(l)) {
        assert!(
            SYSTEM_LIBS.contains(&l.as_str()),
            "unexpected dependency {l}"
        );
    }
}

#[test]
fn default_build_links_no_cuda() {
    let libs = needed(Path::new(env!("CARGO_BIN_EXE_landauer")));
    assert!(libs.contains("libc.so.6"), "{libs:?}");
    let cuda: Vec<_> = libs.iter().filter(|l| is_cuda(l)).collect();
    assert!(cuda.is_empty(), "the CPU build links {cuda:?}");
}

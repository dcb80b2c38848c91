//! Build script for the EMLX NIF.
//!
//! 1. Finds libmlx 0.32.4: `MLX_DIR` (a prefix with `include/` and `lib/`)
//!    wins; otherwise MLX's own PyPI wheel for this platform is downloaded
//!    with `pip download`, checked against the pinned sha256, unpacked into a
//!    cache outside the repository and reused by later builds.
//! 2. Compiles the C++ half of the cxx bridge (`native/bridge/`) against it.
//! 3. Links the NIF: a fast BLAS (Linux; see build/blas.rs) ahead of libmlx
//!    so that MLX's GEMM and LAPACK calls bind to it, then libmlx, with an
//!    rpath to `priv/mlx/lib`.
//! 4. Writes `<target>/<profile>/emlx-mlx-dir`, which `mix compile` reads to
//!    copy libmlx (and the libraries next to it) into `priv/`, and stages the
//!    BLAS libraries in `<target>/<profile>/emlx-blas/` (copied to
//!    `priv/blas/`).

#[path = "build/blas.rs"]
mod blas;
#[path = "build/wheel.rs"]
mod wheel;

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

const MLX_VERSION: &str = "0.32.4";

/// (variant, PyPI package, accepted sha256 of its 0.32.4 wheels)
const WHEELS: &[(&str, &str, &[&str])] = &[
    (
        "cpu",
        "mlx-cpu",
        &["0e0a24fa2ce8b6b94d2e6a90604e8813aa8e29fcb918bb2aa01cfb6d133d8cee"],
    ),
    (
        "cuda",
        "mlx-cuda-13",
        &["94cb48fba73e5ee39467e51c35c51c691123359ca17bafd1a24cf92ad6732bee"],
    ),
    (
        "metal",
        "mlx-metal",
        &[
            "8019b2db622599267d66cc168b2f0dbf5af929790a6c3b3913e00eabc42a7947",
            "9f0a3cc26d89724434d9684932fc6f3e4e83669d2a895d858ed2c8a55eb84e8b",
            "514df92d41a286895d2564b4b18f4da45096bd7a4a0c47e1042f345ad5a7f936",
        ],
    ),
];

const HELP: &str = "EMLX needs libmlx 0.32.4. Either install Python's pip \
(`python3 -m pip --version` must work; Debian: apt-get install python3-pip) so the \
build can download MLX's official wheel, or set MLX_DIR to a prefix that holds \
include/mlx/mlx.h and lib/libmlx.so (lib/libmlx.dylib on macOS).";

fn main() {
    for var in [
        "MLX_DIR",
        "EMLX_MLX_VARIANT",
        "EMLX_CACHE_DIR",
        "EMLX_PYTHON",
        "EMLX_NO_OPENBLAS",
        "EMLX_BLAS",
        "OPENBLAS_DIR",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=native/bridge");
    println!("cargo:rerun-if-changed=native/src/ffi.rs");
    println!("cargo:rerun-if-changed=build");

    let macos = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("macos");
    let prefix = match env::var_os("MLX_DIR") {
        Some(dir) => checked_prefix(Path::new(&dir), macos).unwrap_or_else(|e| fail(&e)),
        None => wheel_prefix(macos).unwrap_or_else(|e| fail(&e)),
    };

    let blas = blas::choose(&profile_dir().join("emlx-blas")).unwrap_or_else(|e| fail(&e));

    let mut bridge = cxx_build::bridge("native/src/ffi.rs");
    bridge
        .files(cpp_sources(Path::new("native/bridge")))
        .include(prefix.join("include"))
        .include("native/bridge")
        .std("c++20")
        .flag_if_supported("-Wno-unused-parameter")
        .opt_level(2);
    if let Some(define) = blas.define() {
        bridge.define(define, None);
    }
    // MLX's CPU-only allocator, whose buffers data_in.cc can make over
    // memory MLX does not own.
    if !macos && env::var_os("MLX_DIR").is_none() && mlx_variant(macos) == "cpu" {
        bridge.define("EMLX_MLX_CPU_ALLOCATOR", None);
    }
    bridge.compile("emlx_bridge");

    link(&prefix, macos, &blas);
    write_manifest(&prefix);
}

/// `<target>/<profile>`: OUT_DIR is `<target>/<profile>/build/emlx-<hash>/out`.
fn profile_dir() -> PathBuf {
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    out.ancestors()
        .nth(3)
        .expect("OUT_DIR layout")
        .to_path_buf()
}

/// Every `.cc` file under `dir` (the bridge and each op family).
fn cpp_sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in
            fs::read_dir(&d).unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", d.display())))
        {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "cc") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn fail(msg: &str) -> ! {
    panic!("\n{msg}\n{HELP}\n");
}

fn libmlx_name(macos: bool) -> &'static str {
    if macos {
        "libmlx.dylib"
    } else {
        "libmlx.so"
    }
}

fn checked_prefix(dir: &Path, macos: bool) -> Result<PathBuf, String> {
    let header = dir.join("include/mlx/mlx.h");
    let lib = dir.join("lib").join(libmlx_name(macos));
    if !header.is_file() || !lib.is_file() {
        return Err(format!(
            "{} does not look like an MLX prefix (missing {} or {})",
            dir.display(),
            header.display(),
            lib.display()
        ));
    }
    dir.canonicalize().map_err(|e| e.to_string())
}

/// Which libmlx wheel: `EMLX_MLX_VARIANT`, else metal on macOS, cpu elsewhere.
fn mlx_variant(macos: bool) -> String {
    env::var("EMLX_MLX_VARIANT").unwrap_or_else(|_| {
        if macos {
            "metal".to_string()
        } else {
            "cpu".to_string()
        }
    })
}

/// Returns the `mlx/` prefix inside the unpacked wheel, downloading it once.
fn wheel_prefix(macos: bool) -> Result<PathBuf, String> {
    let variant = mlx_variant(macos);
    let (_, package, hashes) = WHEELS
        .iter()
        .find(|(v, _, _)| *v == variant)
        .ok_or_else(|| format!("EMLX_MLX_VARIANT={variant} is unknown: use cpu, cuda or metal"))?;
    let wheel = wheel::Wheel {
        package,
        version: MLX_VERSION,
        hashes,
    };
    let root = wheel.fetch(&format!("mlx-{variant}-{MLX_VERSION}"), |d| {
        d.join("mlx/lib").join(libmlx_name(macos)).is_file()
    })?;
    checked_prefix(&root.join("mlx"), macos)
}

fn link(prefix: &Path, macos: bool, blas: &blas::Blas) {
    let lib_dir = prefix.join("lib");
    let arg = |a: &str| println!("cargo:rustc-link-arg={a}");
    if macos {
        arg("-Wl,-rpath,@loader_path/mlx/lib");
        arg(&format!("-Wl,-rpath,{}", lib_dir.display()));
        arg(&format!("-L{}", lib_dir.display()));
        arg("-lmlx");
        arg("-Wl,-undefined,dynamic_lookup");
        return;
    }
    arg("-Wl,-rpath,$ORIGIN/mlx/lib");
    // Lets `cargo test` and a NIF loaded from target/ find libmlx in place.
    arg(&format!("-Wl,-rpath,{}", lib_dir.display()));
    // rustc links with --as-needed, which would drop the BLAS (nothing in
    // the NIF may reference it directly). Keeping it NEEDED ahead of libmlx
    // puts it first in the lookup scope, so libmlx's cblas_*/LAPACK calls
    // bind to it.
    arg("-Wl,--no-as-needed");
    blas::link(blas, &arg);
    arg(&format!("-L{}", lib_dir.display()));
    arg("-lmlx");
    arg("-Wl,--as-needed");
}

fn write_manifest(prefix: &Path) {
    let _ = fs::write(
        profile_dir().join("emlx-mlx-dir"),
        prefix.display().to_string(),
    );
}

//! Which BLAS/LAPACK libmlx's calls bind to on Linux.
//!
//! libmlx's CPU kernels call `cblas_sgemm`, `sgetrf_`, ... and its wheel
//! ships the reference BLAS for them (~6 GFLOP/s). The NIF puts a faster
//! library ahead of it in libmlx's lookup scope (it is NEEDED by the NIF,
//! before libmlx), so those calls bind there:
//!
//! - `wheel` (the default on x86-64 and aarch64 Linux): OpenBLAS from the
//!   `scipy-openblas32` wheel (the same OpenBLAS release numpy 2.4 ships,
//!   32-bit integers as MLX calls it, DYNAMIC_ARCH: it picks its kernels for
//!   the CPU it runs on, and knows CPUs newer than distributions' 0.3.21,
//!   which runs its generic Prescott kernels on unknown Intel models).
//!   Its symbols carry a `scipy_` prefix, so a small library built here,
//!   `libemlx_blas.so`, exports the plain names as one-jump trampolines to
//!   the prefixed ones.
//! - `system`: an installed OpenBLAS (`OPENBLAS_DIR`, else the usual
//!   library directories), with its plain names (`EMLX_BLAS=system`).
//! - `none`: MLX's bundled reference BLAS (`EMLX_BLAS=none` or
//!   `EMLX_NO_OPENBLAS=1`).
//!
//! The chosen files are staged in `<target>/<profile>/emlx-blas/`, which
//! `mix compile` copies to `priv/blas/`.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::wheel::Wheel;

const OPENBLAS: Wheel = Wheel {
    package: "scipy-openblas32",
    version: "0.3.31.188.0",
    hashes: &[
        // manylinux2014 x86_64, aarch64
        "29534062c634a635c4d86b7f238541a81a39e457048ad3d717f54843530a0112",
        "630a0f1da08e498221dd74aed1c2e7d33acd0e9c953521ec9e364a4572ebadc1",
    ],
};

/// Every BLAS/LAPACK routine libmlx 0.32.4 imports (its CPU and CUDA builds
/// alike; `nm -D --undefined-only libmlx.so`).
const ROUTINES: &[&str] = &[
    "cblas_sgemm",
    "cblas_dgemm",
    "cblas_cgemm",
    "sgetrf_",
    "dgetrf_",
    "sgetri_",
    "dgetri_",
    "spotrf_",
    "dpotrf_",
    "strtri_",
    "dtrtri_",
    "sgeqrf_",
    "dgeqrf_",
    "sorgqr_",
    "dorgqr_",
    "ssyevd_",
    "dsyevd_",
    "cheevd_",
    "sgeev_",
    "dgeev_",
    "cgeev_",
    "sgesdd_",
    "dgesdd_",
    "cgesdd_",
];

pub enum Blas {
    /// The staging directory (wheel's libraries and the trampolines).
    Wheel(PathBuf),
    /// The directory of an installed OpenBLAS, and its `-l` argument.
    System(PathBuf, String),
    None,
}

impl Blas {
    /// What the bridge is compiled with (`EMLX_BLAS_*`), for blas_info.
    pub fn define(&self) -> Option<&'static str> {
        match self {
            Blas::Wheel(_) => Some("EMLX_BLAS_WHEEL"),
            Blas::System(..) => Some("EMLX_BLAS_SYSTEM"),
            Blas::None => None,
        }
    }
}

/// Picks (and for `wheel`, fetches and stages) the BLAS; `stage` is
/// `<target>/<profile>/emlx-blas`.
pub fn choose(stage: &Path) -> Result<Blas, String> {
    let _ = fs::remove_dir_all(stage);
    let linux = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let wanted = match env::var("EMLX_BLAS") {
        Ok(v) => v,
        Err(_) if env::var_os("EMLX_NO_OPENBLAS").is_some() => "none".into(),
        Err(_) if env::var_os("OPENBLAS_DIR").is_some() => "system".into(),
        Err(_) if linux && (arch == "x86_64" || arch == "aarch64") => "wheel".into(),
        Err(_) => "system".into(),
    };
    if !linux {
        // macOS: MLX uses Accelerate.
        return Ok(Blas::None);
    }
    match wanted.as_str() {
        "none" => Ok(Blas::None),
        "system" => Ok(match find_system() {
            Some((dir, lib)) => Blas::System(dir, lib),
            None => {
                println!(
                    "cargo:warning=OpenBLAS not found: MLX will use the reference BLAS bundled with its \
                     wheel (matmul ~20x slower). Install libopenblas-dev (Debian), or build with the \
                     default EMLX_BLAS=wheel."
                );
                Blas::None
            }
        }),
        "wheel" => stage_wheel(stage, &arch).map(|()| Blas::Wheel(stage.to_path_buf())),
        other => Err(format!(
            "EMLX_BLAS={other} is unknown: use wheel, system or none"
        )),
    }
}

/// The link arguments that put the BLAS ahead of libmlx (call before
/// `-lmlx`, inside --no-as-needed).
pub fn link(blas: &Blas, arg: &dyn Fn(&str)) {
    match blas {
        Blas::Wheel(stage) => {
            arg("-Wl,-rpath,$ORIGIN/blas");
            arg(&format!("-Wl,-rpath,{}", stage.display()));
            arg(&format!("-L{}", stage.display()));
            arg("-lemlx_blas");
            arg("-l:libscipy_openblas.so");
        }
        Blas::System(dir, lib) => {
            arg(&format!("-L{}", dir.display()));
            arg(lib);
        }
        Blas::None => {}
    }
}

fn stage_wheel(stage: &Path, arch: &str) -> Result<(), String> {
    let root = OPENBLAS.fetch(&format!("scipy-openblas32-{}", OPENBLAS.version), |d| {
        d.join("scipy_openblas32/lib/libscipy_openblas.so")
            .is_file()
    })?;
    let lib = root.join("scipy_openblas32/lib");
    fs::create_dir_all(stage).map_err(|e| format!("cannot create {}: {e}", stage.display()))?;
    // libscipy_openblas.so and the Fortran runtime it finds through its
    // $ORIGIN rpath.
    for entry in fs::read_dir(&lib).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_file() && name.contains(".so") {
            fs::copy(&path, stage.join(name)).map_err(|e| format!("cannot copy {name}: {e}"))?;
        }
    }
    build_trampolines(stage, arch)
}

/// `libemlx_blas.so`: each routine's plain name, exported as a jump to its
/// `scipy_` twin (registers and stack untouched, so any signature passes).
fn build_trampolines(stage: &Path, arch: &str) -> Result<(), String> {
    let jump = match arch {
        "x86_64" => "jmp scipy_{}@PLT",
        "aarch64" => "b scipy_{}",
        other => return Err(format!("no BLAS trampolines for {other}")),
    };
    let mut asm = String::from("// Generated by build/blas.rs.\n.text\n");
    for name in ROUTINES {
        asm += &format!(
            ".globl {name}\n.type {name}, %function\n{name}:\n  {}\n.size {name}, .-{name}\n",
            jump.replace("{}", name)
        );
    }
    asm += ".section .note.GNU-stack,\"\",%progbits\n";
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let source = out.join("emlx_blas.S");
    fs::write(&source, asm).map_err(|e| e.to_string())?;
    let compiler = cc::Build::new().get_compiler();
    let status = Command::new(compiler.path())
        .args(["-shared", "-fPIC", "-o"])
        .arg(stage.join("libemlx_blas.so"))
        .arg(&source)
        .arg(format!("-L{}", stage.display()))
        .args([
            "-l:libscipy_openblas.so",
            "-Wl,-rpath,$ORIGIN",
            "-Wl,-z,defs",
        ])
        .arg("-Wl,-soname,libemlx_blas.so")
        .status()
        .map_err(|e| format!("could not run the C compiler: {e}"))?;
    if !status.success() {
        return Err(format!("building libemlx_blas.so failed ({status})"));
    }
    Ok(())
}

/// Directory holding an installed OpenBLAS, and the `-l` argument for it.
fn find_system() -> Option<(PathBuf, String)> {
    let mut dirs: Vec<PathBuf> = env::var_os("OPENBLAS_DIR")
        .map(|d| vec![PathBuf::from(&d).join("lib"), PathBuf::from(d)])
        .unwrap_or_default();
    for d in [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/usr/local/lib",
    ] {
        dirs.push(PathBuf::from(d));
    }
    for dir in dirs {
        if dir.join("libopenblas.so").exists() {
            return Some((dir, "-lopenblas".to_string()));
        }
        if dir.join("libopenblas.so.0").exists() {
            return Some((dir, "-l:libopenblas.so.0".to_string()));
        }
    }
    None
}

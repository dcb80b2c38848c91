//! Fetching a pinned PyPI wheel once into EMLX's cache (used by build.rs for
//! libmlx and for OpenBLAS).
//!
//! `pip download --require-hashes` checks the wheel against the pinned
//! sha256 values; the wheel is unpacked next to its final directory and
//! renamed into place, so an interrupted build never leaves a half-unpacked
//! directory that looks complete.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A wheel to fetch: `package==version`, accepted if its sha256 is one of
/// `hashes` (one per platform).
pub struct Wheel<'a> {
    pub package: &'a str,
    pub version: &'a str,
    pub hashes: &'a [&'a str],
}

/// The cache directory: `EMLX_CACHE_DIR`, else `$XDG_CACHE_HOME/emlx`, else
/// `~/.cache/emlx`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = env::var_os("EMLX_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("emlx");
    }
    match env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache/emlx"),
        None => env::temp_dir().join("emlx-cache"),
    }
}

impl Wheel<'_> {
    /// The directory `unpacked` (under the cache) holding the unpacked
    /// wheel, downloading and unpacking it unless `ready(dir)` says an
    /// earlier build already did.
    pub fn fetch(&self, unpacked: &str, ready: impl Fn(&Path) -> bool) -> Result<PathBuf, String> {
        let cache = cache_dir();
        let target = cache.join(unpacked);
        if ready(&target) {
            return Ok(target);
        }
        let wheel = self.download(&cache)?;
        let python = python();
        let staging = cache.join(format!("{unpacked}.partial-{}", std::process::id()));
        let _ = fs::remove_dir_all(&staging);
        let status = Command::new(&python)
            .args(["-m", "zipfile", "-e"])
            .arg(&wheel)
            .arg(&staging)
            .status()
            .map_err(|e| format!("could not run `{python} -m zipfile`: {e}"))?;
        if !status.success() {
            return Err(format!("could not unpack {}", wheel.display()));
        }
        let _ = fs::remove_dir_all(&target);
        fs::rename(&staging, &target)
            .map_err(|e| format!("cannot move the unpacked wheel into place: {e}"))?;
        if !ready(&target) {
            return Err(format!(
                "the {} wheel unpacked into {} lacks the files this build needs",
                self.package,
                target.display()
            ));
        }
        Ok(target)
    }

    /// The wheel file in `<cache>/wheels`, downloaded with pip if missing.
    fn download(&self, cache: &Path) -> Result<PathBuf, String> {
        let (package, version) = (self.package, self.version);
        let wheels = cache.join("wheels");
        fs::create_dir_all(&wheels)
            .map_err(|e| format!("cannot create {}: {e}", wheels.display()))?;
        let prefix = format!("{}-{version}-", package.replace('-', "_"));
        let find = || {
            fs::read_dir(&wheels).ok().and_then(|entries| {
                entries.filter_map(Result::ok).map(|e| e.path()).find(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl"))
                })
            })
        };
        if let Some(wheel) = find() {
            return Ok(wheel);
        }
        let requirements = cache.join(format!("requirements-{package}.txt"));
        let hash_args: Vec<String> = self
            .hashes
            .iter()
            .map(|h| format!("--hash=sha256:{h}"))
            .collect();
        fs::write(
            &requirements,
            format!("{package}=={version} {}\n", hash_args.join(" ")),
        )
        .map_err(|e| e.to_string())?;
        println!(
            "cargo:warning=downloading {package}=={version} with pip (cached in {})",
            cache.display()
        );
        let python = python();
        let status = Command::new(&python)
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
            ])
            .args(["--require-hashes", "-r"])
            .arg(&requirements)
            .arg("-d")
            .arg(&wheels)
            .status()
            .map_err(|e| format!("could not run `{python} -m pip`: {e}"))?;
        if !status.success() {
            return Err(format!(
                "`{python} -m pip download {package}=={version}` failed ({status})"
            ));
        }
        find().ok_or_else(|| {
            format!(
                "pip did not leave a {package} wheel in {}",
                wheels.display()
            )
        })
    }
}

/// The Python whose pip downloads wheels (`EMLX_PYTHON`, default `python3`).
fn python() -> String {
    env::var("EMLX_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

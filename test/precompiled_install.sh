#!/usr/bin/env bash
# Installs emlx as a user without Rust does, from artifacts built here.
#
#   test/precompiled_install.sh [DIST]   (in a checkout; .ci/run runs it)
#
# 1. `mix emlx.precompile DIST` writes this platform's artifact and checksums
#    (with DIST given, the artifact already there is tested instead: the
#    release workflow tests the very file it publishes).
# 2. A fresh copy of the working tree (what `git clone` gives: no priv/, no
#    checksum file), with no cargo or rustc on PATH, compiles with
#    EMLX_PRECOMPILED_URL=file://DIST, then (without it) passes a test file
#    and checks an `EMLX` computation.
# 3. The Hex package's files (mix.exs `package: [files: ...]`) with the
#    checksum file it carries compile the same way.
# 4. There, a tampered artifact is refused with a message naming the checksum
#    and the checksum file, and nothing is installed.
# Steps 3 and 4 are about the native library, so they skip Nx (EMLX_NO_NX=1)
# to save compiling it twice more when EMLX_DEPS_DIR provides it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/emlx-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
say() { echo "precompiled_install: $*"; }
fail() { echo "precompiled_install: FAILED: $*" >&2; exit 1; }

cd "$root"
if [ -n "${1:-}" ]; then
  mkdir -p "$work/dist" && cp "$1"/emlx-*.tar.gz "$1/checksums.sha256" "$work/dist/"
else
  mix emlx.precompile "$work/dist"
fi
artifact=$(cd "$work/dist" && ls emlx-*.tar.gz)
[ "$(echo "$artifact" | wc -l)" -eq 1 ] || fail "expected one artifact in the dist folder, found: $artifact"

# Copies the named files (NUL-separated on stdin, relative to root) into $1.
copy_files() {
  mkdir -p "$1"
  while IFS= read -r -d '' f; do
    if [ -e "$f" ]; then mkdir -p "$1/$(dirname "$f")" && cp -pR "$f" "$1/$f"; fi
  done
}

# PATH without any folder that holds cargo or rustc.
no_rust_path=
IFS=: read -ra dirs <<<"$PATH"
for d in "${dirs[@]}"; do
  [ -x "$d/cargo" ] || [ -x "$d/rustc" ] || no_rust_path="$no_rust_path${no_rust_path:+:}$d"
done
PATH=$no_rust_path command -v cargo >/dev/null && fail "cannot hide cargo: it is in a folder mix needs"
PATH=$no_rust_path command -v mix >/dev/null || fail "mix is in the same folder as cargo"

# Runs a command in $1 as the user: no Rust, a fresh cache, artifacts from
# the URL $2 (none when empty).
as_user() {
  local dir=$1 url=$2
  shift 2
  (cd "$dir" && env -u EMLX_BUILD -u EMLX_PRECOMPILED_URL PATH="$no_rust_path" \
    EMLX_CACHE_DIR="$work/cache-$(basename "$dir")" ${url:+EMLX_PRECOMPILED_URL="$url"} "$@")
}

check='a = EMLX.from_blob(<<1.0::float-32-native, 2.0::float-32-native, 3.0::float-32-native, 4.0::float-32-native>>, {2, 2}, :float32, :cpu)
b = EMLX.from_blob(<<5.0::float-32-native, 6.0::float-32-native, 7.0::float-32-native, 8.0::float-32-native>>, {2, 2}, :float32, :cpu)
got = for <<x::float-32-native <- EMLX.to_blob(EMLX.tensordot(a, b, [1], [0]))>>, do: x
want = for i <- 0..1, j <- 0..1, do: Enum.sum(for k <- 0..1, do: (i * 2 + k + 1) * (k * 2 + j + 5)) * 1.0
IO.puts("a . b = #{inspect(got)} (by hand: #{inspect(want)})")
if got != want, do: System.halt(1)'

say "fresh clone, no Rust on PATH, artifacts from file://$work/dist"
git ls-files -z -co --exclude-standard | copy_files "$work/clone"
[ ! -e "$work/clone/priv" ] && [ ! -e "$work/clone/checksums.sha256" ] || fail "the copy is not a fresh clone"
as_user "$work/clone" "file://$work/dist" mix deps.get >/dev/null
as_user "$work/clone" "file://$work/dist" MIX_ENV=test mix compile
grep -q "^$artifact " "$work/clone/priv/.emlx-artifact" || fail "priv/ does not hold $artifact"
# Later commands need neither Rust nor the URL: the installed artifact stays.
as_user "$work/clone" "" MIX_ENV=test mix test test/emlx/foundation_test.exs
as_user "$work/clone" "" MIX_ENV=test mix run -e "$check"

say "the Hex package's files with the checksum file it carries"
MIX_ENV=test mix run --no-compile --no-start --no-deps-check -e 'IO.write(Enum.join(Mix.Project.config()[:package][:files], <<0>>) <> <<0>>)' |
  copy_files "$work/package"
cp "$work/dist/checksums.sha256" "$work/package/"
as_user "$work/package" "file://$work/dist" EMLX_NO_NX=1 mix run -e "$check"

say "a tampered artifact, checked against the package's checksum file"
mkdir -p "$work/bad"
cp "$work/dist/$artifact" "$work/bad/"
printf TAMPERED | dd of="$work/bad/$artifact" bs=1 seek=1000 conv=notrunc 2>/dev/null
rm -rf "$work/package/priv" "$work/cache-package"
if as_user "$work/package" "file://$work/bad" EMLX_NO_NX=1 mix compile >"$work/tampered.log" 2>&1; then
  fail "mix compile accepted a tampered artifact"
fi
cat "$work/tampered.log"
grep -q "checksum mismatch for $artifact" "$work/tampered.log" || fail "the error does not name the checksum"
grep -q "$work/package/checksums.sha256 says" "$work/tampered.log" || fail "the error does not name the checksum file"
[ ! -e "$work/package/priv" ] || fail "a tampered artifact left files in priv/"
say "ok: installed and computed without Rust; the tampered artifact was refused"

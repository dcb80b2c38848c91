#!/usr/bin/env bash
# Installs an Elixir >= 1.17 on Debian bookworm, whose own Elixir (1.14) is too
# old for Nx 0.13. Builds the source package of Debian trixie's Elixir against
# bookworm's Erlang/OTP 25. The trixie entry is deb-src only, so no binary
# package of trixie can ever be pulled into the machine.
# Usage: .ci/install-elixir.sh PREFIX   (Elixir lands in PREFIX/bin)
set -euo pipefail
prefix=${1:?usage: install-elixir.sh PREFIX}
if [ -x "$prefix/bin/elixir" ]; then
  echo "elixir already installed in $prefix"
  exit 0
fi

src_list=/etc/apt/sources.list.d/emlx-trixie-src.sources
if [ ! -f "$src_list" ]; then
  # Derive the mirror from the machine's own bookworm entry (deb822 or one-line).
  mirror=$( (sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null
    sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' /etc/apt/sources.list 2>/dev/null || true) |
    grep -v security | awk 'NR == 1')
  [ -n "$mirror" ] || { echo "no Debian mirror found in the apt sources" >&2; exit 1; }
  cat >"$src_list" <<SRC
Types: deb-src
URIs: $mirror
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt-get update -qq
fi

work=$(mktemp -d)
cd "$work"
# The .dsc may 404 while the tarball arrives, so apt's exit code is not the test.
apt-get source --download-only elixir/trixie >/dev/null 2>&1 || true
tarball=$(ls elixir-lang_*.orig.tar.* 2>/dev/null | head -n 1)
[ -n "$tarball" ] || { echo "could not download Elixir's source from trixie" >&2; exit 1; }
tar xf "$tarball"
cd "$(find . -maxdepth 1 -mindepth 1 -type d | head -n 1)"
make compile >/dev/null
make install PREFIX="$prefix" >/dev/null
cd /
rm -rf "$work"
"$prefix/bin/elixir" --version | tail -n 1

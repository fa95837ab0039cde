#!/usr/bin/env bash
# Builds (once) the small test kernel from Debian's linux-source-6.12 with kernel.fragment, and
# prints the folder that holds it: bzImage, config, and include/ (the uapi headers of that tree).
# The build is cached outside the checkout, keyed by the fragment, this script and the source
# package version, so a changed fragment rebuilds and an unchanged one costs nothing.
#
# usage: tests/vm/build-kernel.sh            (progress on stderr, the folder on stdout)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fragment=$here/kernel.fragment
src_tar=/usr/src/linux-source-6.12.tar.xz
die() { echo "build-kernel: $*" >&2; exit 2; }

[[ -r $src_tar ]] || die "$src_tar is missing; run scripts/setup-deps.sh (package linux-source-6.12)"
src_version=$(dpkg-query -W -f='${Version}' linux-source-6.12)
key=$(cat "$fragment" "${BASH_SOURCE[0]}" <(echo "$src_version") | sha256sum | cut -c1-16)
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/vfio-engine
out=$cache_root/kernel-6.12-$key
if [[ -f $out/.done ]]; then echo "$out"; exit 0; fi

mkdir -p "$cache_root"
exec 9>"$cache_root/kernel-build.lock"
flock 9  # another run may be building the same kernel; wait for it
if [[ -f $out/.done ]]; then echo "$out"; exit 0; fi

build=$cache_root/build-$key
rm -rf "$build" "$out"
mkdir -p "$build"
trap 'rm -rf "$build"' EXIT
echo "build-kernel: building the 6.12 test kernel (about 4 minutes on 2 cores; cached in $out)" >&2
tar -xJf "$src_tar" -C "$build" --strip-components=1
cd "$build"
make -s ARCH=x86_64 tinyconfig >&2
scripts/kconfig/merge_config.sh -m .config "$fragment" >/dev/null
make -s ARCH=x86_64 olddefconfig >&2

# A fragment line that olddefconfig dropped (a missing dependency) would make a kernel that
# silently lacks a feature the tests rely on: refuse it here instead.
missing=()
while IFS= read -r line; do
  [[ $line =~ ^CONFIG_[A-Z0-9_]+= ]] || continue
  grep -qxF "$line" .config || missing+=("$line")
done <"$fragment"
((${#missing[@]} == 0)) || die "these fragment lines did not survive olddefconfig: ${missing[*]}"

make -s ARCH=x86_64 -j"$(nproc)" bzImage >&2
make -s ARCH=x86_64 headers_install INSTALL_HDR_PATH="$build/hdr" >&2
mkdir -p "$out"
cp arch/x86/boot/bzImage .config "$out/"
cp -r "$build/hdr/include" "$out/include"
touch "$out/.done"
echo "$out"

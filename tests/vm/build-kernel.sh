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

# Everything the build needs, checked before minutes of compiling: each missing tool or header
# is named with the Debian package that has it.
require_build_tools() {
  local missing=() tool pkg header
  for tool in tar xz:xz-utils make gcc ld:binutils bison flex bc perl:perl-base rsync \
              dpkg-query:dpkg sha256sum:coreutils flock:util-linux; do
    pkg=${tool#*:} tool=${tool%%:*}
    command -v "$tool" >/dev/null || missing+=("$pkg$([[ $pkg == "$tool" ]] || echo " (for $tool)")")
  done
  for header in gelf.h:libelf-dev openssl/opensslv.h:libssl-dev; do
    pkg=${header#*:} header=${header%%:*}
    command -v gcc >/dev/null || break  # gcc is reported above; without it nothing can be probed
    echo "#include <$header>" | gcc -E -x c - >/dev/null 2>&1 || missing+=("$pkg (for <$header>)")
  done
  [[ -r $src_tar ]] || missing+=("linux-source-6.12 (for $src_tar)")
  ((${#missing[@]} == 0)) ||
    die "missing before the build could start: ${missing[*]}; run scripts/setup-deps.sh (as root) or apt-get install them"
}
command -v dpkg-query >/dev/null && command -v sha256sum >/dev/null || die "dpkg-query and sha256sum are needed (Debian 12)"
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
require_build_tools  # only when there is something to build: a cached kernel needs none of them
# A tree kept by a failed build of another key (an older fragment, script or source package)
# will never be resumed: at 1.5 GB or more, it goes.
for stale in "$cache_root"/build-*; do
  [[ -e $stale && $stale != "$cache_root/build-$key" ]] && rm -rf "$stale"
done

# The build tree stays until the kernel is in $out: a failure or an interruption after it was
# configured (during the compile, or in headers_install after bzImage) leaves it, and the next
# run goes on from where make stopped instead of compiling the whole kernel again. Only a tree
# whose configuration never finished is thrown away.
build=$cache_root/build-$key
if [[ ! -f $build/.configured ]]; then
  rm -rf "$build"
  mkdir -p "$build"
  trap '[[ -f $build/.configured ]] || rm -rf "$build"' EXIT
  echo "build-kernel: building the 6.12 test kernel (about 10 minutes on 2 cores; cached in $out)" >&2
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
  touch .configured
else
  echo "build-kernel: going on with the 6.12 build an earlier run left in $build" >&2
  cd "$build"
fi
trap '[[ -f $out/.done ]] || echo "build-kernel: failed; $build is kept, the next run goes on from there" >&2' EXIT

make -s ARCH=x86_64 -j"$(nproc)" bzImage >&2
rm -rf "$build/hdr"
make -s ARCH=x86_64 headers_install INSTALL_HDR_PATH="$build/hdr" >&2
rm -rf "$out"
mkdir -p "$out"
cp arch/x86/boot/bzImage .config "$out/"
cp -r "$build/hdr/include" "$out/include"
touch "$out/.done"
cd /
rm -rf "$build"
echo "$out"

#!/usr/bin/env bash
# Installs every Debian 12 package that the build, the tests, the benchmarks and the VM rig need.
# Idempotent and quick when nothing is missing (no apt-get at all then). Needs root when
# something is missing.
#
# usage: scripts/setup-deps.sh [--check]     --check: list what is missing, install nothing
set -euo pipefail

packages=(
  # build
  g++ cmake ninja-build pkg-config make
  libtbb-dev libhwloc-dev liburing-dev libfmt-dev libcli11-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # the fuzz targets (tests/fuzz): clang 14 and its libFuzzer runtime
  clang libclang-rt-14-dev
  # peers the micro benchmarks compare against (bench/README.md)
  libboost-dev libconcurrentqueue-dev libreaderwriterqueue-dev libatomic-queue-dev
  # the VM rig: QEMU, the guest's userland, Debian's kernel (fetched by apt-get download) and the
  # small 6.12 kernel built from source
  qemu-system-x86 busybox-static kmod cpio gzip xz-utils libc6-dev util-linux coreutils procps
  linux-source-6.12 bison flex libelf-dev libssl-dev bc
  # make headers_install (the small kernel's uapi headers) copies with rsync
  rsync
  # hwloc reads XML topologies (the Topology tests' fixtures) only through its plugins
  libhwloc-plugins
  # the rig's QEMU monitor socket (hot-unplug requests from the guest)
  socat
  # the kernel's own I/O path that vfio-bench nvme is compared with in the guest
  fio
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "setup-deps: all ${#packages[@]} packages are installed"
  exit 0
fi
if [[ ${1:-} == --check ]]; then
  echo "setup-deps: missing: ${missing[*]}"
  exit 1
fi
if ((EUID != 0)); then
  echo "setup-deps: missing ${missing[*]}; run this script as root (or install them with apt-get)" >&2
  exit 2
fi

echo "setup-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "setup-deps: done"

#!/usr/bin/env bash
# Installs every Debian 12 package that the build, the tests, the benchmarks and the VM rig need,
# on a minimal Debian 12 (mmdebstrap --variant=minbase, plus git and ca-certificates; CI proves
# that list on a brand-new root every run, scripts/fresh-machine.sh). Idempotent and quick when
# nothing is missing (no apt-get at all then). Needs root only when something is missing.
#
# On another system it says what it needs and stops; VFE_SKIP_SETUP=1 skips it (you installed the
# same things yourself; nothing else is supported).
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
  # the rig's stalling namespace: an NBD server whose pause filter holds requests on demand
  nbdkit
  # the kernel's own I/O path that vfio-bench nvme is compared with in the guest, and what checks
  # vfe-ublk's block device there (fio --verify, an ext4 filesystem)
  fio e2fsprogs
)

if [[ ${VFE_SKIP_SETUP:-} == 1 ]]; then
  echo "setup-deps: skipped (VFE_SKIP_SETUP=1): the ${#packages[@]} packages listed in $0 are assumed present"
  exit 0
fi

# Debian 12 only: the package names, linux-source-6.12 and the kernels the rig boots are
# bookworm's. Say what is needed instead of failing halfway through an apt-get.
os=unknown os_id="" os_version=""
if [[ -r /etc/os-release ]]; then
  # shellcheck disable=SC1091
  os_id=$(. /etc/os-release && echo "${ID:-}") os_version=$(. /etc/os-release && echo "${VERSION_ID:-}")
  os=$(. /etc/os-release && echo "${PRETTY_NAME:-$ID}")
fi
if [[ $os_id != debian || $os_version != 12 ]] || ! command -v dpkg-query >/dev/null; then
  cat >&2 <<MSG
setup-deps: vfio-engine's scripts are made for Debian 12 (bookworm); this machine is '$os'.
  They need these Debian 12 packages (or the same versions built for your system):
    ${packages[*]}
  Either run them on Debian 12, or in a fresh Debian 12 root made from here with
  'sudo scripts/fresh-machine.sh scripts/test.sh' (needs mmdebstrap, and a bookworm apt sources
  file in VFE_FRESH_APT_SOURCES), or install the equivalents yourself and set VFE_SKIP_SETUP=1
  (unsupported).
MSG
  exit 2
fi

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
  cat >&2 <<MSG
setup-deps: ${#missing[@]} of the packages the build and the tests need are missing, and only root
  can install them. Run the same command as root (sudo $0, or sudo scripts/test.sh), or have root run:
    apt-get install --no-install-recommends ${missing[*]}
  Once they are installed, everything else runs as an ordinary user.
MSG
  exit 2
fi

echo "setup-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "setup-deps: done"

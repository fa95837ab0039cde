#!/usr/bin/env bash
# Fetches (once) Debian's own kernel, the one linux-image-amd64 depends on, for the type1 runs,
# and prints the folder that holds it: vmlinuz, modules/*.ko, and modules.load (the insmod order
# for vfio-pci, vfio_iommu_type1 and nvme, the kernel's own driver that fio's comparison runs
# on). Cached outside the checkout, keyed by the package name and the module list.
#
# usage: tests/vm/fetch-debian-kernel.sh     (progress on stderr, the folder on stdout)
set -euo pipefail

die() { echo "fetch-debian-kernel: $*" >&2; exit 2; }
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/vfio-engine
modules=(vfio_iommu_type1 vfio-pci nvme)
modules_key=$(echo "${modules[*]}" | md5sum | cut -c1-8)

pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n1)
if [[ -z $pkg ]]; then
  # No package lists (apt-get update never ran, or no network): a cached kernel still serves.
  cached=$(ls -d "$cache_root"/debian-linux-image-*-"$modules_key"/ 2>/dev/null | tail -n1 || true)
  [[ -n $cached && -f $cached/.done ]] || die "cannot resolve linux-image-amd64; run scripts/setup-deps.sh"
  echo "${cached%/}"; exit 0
fi
out=$cache_root/debian-$pkg-$modules_key
if [[ -f $out/.done ]]; then echo "$out"; exit 0; fi

mkdir -p "$cache_root"
exec 9>"$cache_root/debian-kernel.lock"
flock 9
if [[ -f $out/.done ]]; then echo "$out"; exit 0; fi

work=$(mktemp -d "$cache_root/fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "fetch-debian-kernel: downloading $pkg (cached in $out)" >&2
# apt runs the download as root here (the folder is root's), which it notes with a warning.
(cd "$work" && apt-get download -q "$pkg" >&2) || die "apt-get download $pkg failed"
dpkg -x "$work"/"$pkg"_*.deb "$work/root"
kver=${pkg#linux-image-}
depmod -b "$work/root" "$kver"

rm -rf "$out"
mkdir -p "$out/modules"
cp "$work/root/boot/vmlinuz-$kver" "$out/vmlinuz"
# The insmod order: dependencies first, each module once.
: >"$out/modules.load"
for mod in "${modules[@]}"; do
  modprobe -d "$work/root" -S "$kver" --show-depends "$mod" | awk '$1 == "insmod" {print $2}'
done | awk '!seen[$0]++' | while read -r ko; do
  cp "$ko" "$out/modules/"
  basename "$ko" >>"$out/modules.load"
done
[[ -s $out/modules.load ]] || die "modprobe found no modules for vfio-pci in $pkg"
touch "$out/.done"
echo "$out"

#!/usr/bin/env bash
# Runs a command on a brand-new minimal Debian 12 machine, the way a new user would: makes a root
# with `mmdebstrap --variant=minbase bookworm` plus git and ca-certificates (apt sources copied
# from this host's own configuration), clones the committed HEAD of this repository into it
# (/root/vfio-engine), mounts proc, sys, dev and a tmpfs on /run, runs CMD as root from the
# clone's root with an empty environment (HOME, PATH, TERM, LANG only), and removes every mount
# and file it made, also on Ctrl-C and on failure. Exits with CMD's status.
#
# Nothing of the host goes in but the sources and resolv.conf: no installed package, no
# ~/.cache/vfio-engine, no kernel, no build folder, no uncommitted change. Only the bare minbase
# tarball is cached (${XDG_CACHE_HOME:-~/.cache}/vfio-engine/fresh-machine/, remade after 7 days
# or when the sources change). Needs root and mmdebstrap (apt-get install mmdebstrap) on the host.
#
# usage: scripts/fresh-machine.sh CMD [ARG...]        e.g. scripts/fresh-machine.sh scripts/test.sh
# environment: VFE_FRESH_DIR         where the root is made (default /var/tmp; about 12 GiB for
#                                    scripts/test.sh)
#              VFE_FRESH_APT_SOURCES a sources file to use instead of the host's
set -euo pipefail

die() { echo "fresh-machine: $*" >&2; exit 2; }
say() { echo "fresh-machine: $*" >&2; }
case ${1:-} in
  "") die "usage: scripts/fresh-machine.sh CMD [ARG...] (see --help)" ;;
  -h|--help) sed -n '2,18s/^# \{0,1\}//p' "$0"; exit 0 ;;
esac

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
((EUID == 0)) || die "needs root (it runs mmdebstrap, mount and chroot); run it with sudo"
for tool in mmdebstrap unshare setpriv chroot git tar; do
  command -v "$tool" >/dev/null || die "'$tool' is missing on this host; apt-get install $(
    case $tool in unshare|setpriv) echo util-linux ;; chroot) echo coreutils ;; *) echo "$tool" ;; esac)"
done
head=$(git -C "$repo" rev-parse --verify HEAD) || die "$repo is not a git checkout with a commit"
[[ -z $(git -C "$repo" status --porcelain --untracked-files=no) ]] ||
  say "note: uncommitted changes in $repo are not part of this run (it clones HEAD ${head:0:12})"

# --- the apt sources: the host's own files (one-line .list and deb822 .sources), never a name of
# ours. mmdebstrap takes each file as a MIRROR argument and writes it into the root.
sources=()
if [[ -n ${VFE_FRESH_APT_SOURCES:-} ]]; then
  [[ -r $VFE_FRESH_APT_SOURCES ]] || die "VFE_FRESH_APT_SOURCES=$VFE_FRESH_APT_SOURCES is not readable"
  sources=("$VFE_FRESH_APT_SOURCES")
else
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -s $f ]] && grep -qv '^[[:space:]]*\(#\|$\)' "$f" && sources+=("$f")
  done
fi
((${#sources[@]})) || die "this host has no apt sources in /etc/apt; set VFE_FRESH_APT_SOURCES to a sources file"

# --- the minbase tarball, cached: keyed by the sources, the package set and this script's
# mmdebstrap line; remade once a week so security updates are not missed.
cache=${XDG_CACHE_HOME:-$HOME/.cache}/vfio-engine/fresh-machine
include=git,ca-certificates
key=$(cat "${sources[@]}" <(echo "bookworm minbase $include") | sha256sum | cut -c1-16)
tarball=$cache/minbase-bookworm-$key.tar
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9  # one mmdebstrap at a time per cache
t0=$SECONDS
if [[ ! -s $tarball || -n $(find "$tarball" -mtime +7) ]]; then
  say "making the minbase tarball with mmdebstrap (about a minute; cached in $cache)"
  rm -f "$cache"/minbase-bookworm-*.tar "$tarball.part"
  mmdebstrap --quiet --variant=minbase --include="$include" --format=tar bookworm "$tarball.part" \
    "${sources[@]}" || die "mmdebstrap failed (see above)"
  mv "$tarball.part" "$tarball"
fi
flock -u 9

# --- the root, and its removal on every way out.
base=${VFE_FRESH_DIR:-/var/tmp}
mkdir -p "$base"
# nothing_mounted_under DIR: true when no mount point lies in DIR (rm must not reach the host).
nothing_mounted_under() { ! awk -v w="$1/" '$5 ~ "^"w || $5"/" == w' /proc/self/mountinfo | grep -q .; }
# A root whose script was killed outright (SIGKILL: no trap ran) is removed by the next run.
for stale in "$base"/vfe-fresh.*/; do
  [[ -f $stale/pid ]] || continue
  kill -0 "$(cat "$stale/pid")" 2>/dev/null && continue
  nothing_mounted_under "${stale%/}" && rm -rf --one-file-system "${stale%/}" && say "removed ${stale%/}, left by a killed run"
done
work=$(mktemp -d "$base/vfe-fresh.XXXXXX")
echo $$ >"$work/pid"
root=$work/root
child=
cleanup() {
  local status=$?
  trap - EXIT INT TERM HUP
  if [[ -n $child ]] && kill -0 "$child" 2>/dev/null; then
    say "stopping the command"
    # unshare ignores SIGINT and SIGTERM while it waits; its SIGKILL takes the namespace's first
    # process with it (--kill-child), and with that every process of the PID namespace (QEMU,
    # make, ctest, daemons too).
    kill -KILL "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  # The mounts were made in unshare's private mount namespace and died with it. Refuse to
  # delete anything if one is visible here after all: rm would reach through it into the host.
  if ! nothing_mounted_under "$work"; then
    say "something is still mounted under $work; not deleting it (umount -R it, then rm -rf it)"
    exit 2
  fi
  rm -rf --one-file-system "$work"
  say "removed $work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

mkdir "$root"
tar -C "$root" --numeric-owner -xpf "$tarball"
cat /etc/resolv.conf >"$root/etc/resolv.conf"  # the host's resolver, so apt reaches the mirror
git clone --quiet --no-hardlinks "$repo" "$root/root/vfio-engine"
git -C "$root/root/vfio-engine" checkout --quiet --detach "$head"
say "root ready in $((SECONDS - t0)) s: $root (Debian 12 minbase + $include, HEAD ${head:0:12})"

# --- CMD: in its own mount and PID namespaces, so its mounts and its processes cannot outlive it,
# even when this script is killed outright (setpriv --pdeathsig: unshare goes when we go).
t1=$SECONDS
# shellcheck disable=SC2016  # expanded by the inner shells
setpriv --pdeathsig KILL -- unshare --mount --propagation private --pid --fork --kill-child -- /bin/bash -c '
  set -e
  r=$1; shift
  mount -t proc proc "$r/proc"
  mount -t sysfs sysfs "$r/sys"
  mount --rbind /dev "$r/dev"
  mount -t tmpfs -o mode=755 tmpfs "$r/run"
  chroot "$r" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /bin/bash -c "cd /root/vfio-engine && exec \"\$@\"" fresh-machine "$@"
' fresh-machine "$root" "$@" </dev/null &
child=$!
status=0
wait "$child" || status=$?
child=
say "'$*' exited $status after $((SECONDS - t1)) s"
exit "$status"

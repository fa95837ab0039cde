#!/usr/bin/env bash
# Runs a command on a brand-new minimal Debian 12 machine, the way a new user would: makes a root
# with `mmdebstrap --variant=minbase bookworm` plus git and ca-certificates (apt sources taken
# from this host's own configuration), clones the committed HEAD of this repository into it
# (/root/vfio-engine), mounts proc, sys, dev (with its own /dev/shm) and a tmpfs on /run, runs
# CMD as root from the clone's root with an empty environment (HOME, PATH, TERM, LANG only), and
# removes every mount and file it made, also on Ctrl-C and on failure. Exits with CMD's status.
#
# Nothing of the host goes in but the Debian 12 apt sources and resolv.conf: no installed
# package, no ~/.cache/vfio-engine, no kernel, no build folder, no uncommitted change. Only the
# bare minbase tarball is cached (${XDG_CACHE_HOME:-~/.cache}/vfio-engine/fresh-machine/, remade
# after a week or when the sources change). Needs root, git and mmdebstrap on the host.
#
# usage: scripts/fresh-machine.sh CMD [ARG...]        e.g. scripts/fresh-machine.sh scripts/test.sh
# environment: VFE_FRESH_DIR         where the root is made (default /var/tmp; about 12 GiB for
#                                    scripts/test.sh)
#              VFE_FRESH_APT_SOURCES a bookworm sources file to use instead of the host's (a host
#                                    that is not Debian 12 has none to give)
set -euo pipefail

die() { echo "fresh-machine: $*" >&2; exit 2; }
say() { echo "fresh-machine: $*" >&2 || true; }
case ${1:-} in
  "") die "usage: scripts/fresh-machine.sh CMD [ARG...] (see --help)" ;;
  -h|--help) sed -n '2,19s/^# \{0,1\}//p' "$0"; exit 0 ;;
esac

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
((EUID == 0)) || die "needs root (it runs mmdebstrap, mount and chroot); run it with sudo"
for tool in mmdebstrap unshare setpriv chroot git tar realpath; do
  command -v "$tool" >/dev/null || die "'$tool' is missing on this host; apt-get install $(
    case $tool in unshare|setpriv) echo util-linux ;; chroot|realpath) echo coreutils ;; *) echo "$tool" ;; esac)"
done
head=$(git -C "$repo" rev-parse --verify HEAD) || die "$repo is not a git checkout with a commit"
[[ -z $(git --no-optional-locks -C "$repo" status --porcelain --untracked-files=no) ]] ||
  say "note: uncommitted changes in $repo are not part of this run (it clones HEAD ${head:0:12})"

# --- The apt sources: the host's Debian 12 entries only (bookworm suites, Debian's own keyring
# or none named), from its one-line .list and deb822 .sources files; never a host name of ours.
# Other entries (a third-party repository whose key the root lacks, another release) would
# break apt or make the root something other than Debian 12.
bookworm_sources() {  # bookworm_sources FILE...: the kept entries, one-line format
  awk '
    function keep(types, uri, suites, comps, signed,   n, i, s) {
      if (types !~ /(^| )deb( |$)/ || uri == "") return
      if (signed != "" && signed !~ /debian-archive-keyring/) return
      n = split(suites, s, " ")
      for (i = 1; i <= n; i++) if (s[i] ~ /^bookworm(-[a-z]+)?$/) print "deb " uri " " s[i] " " comps
    }
    FNR == 1 { flush(); deb822 = FILENAME ~ /\.sources$/ }
    function flush() { if (deb822) keep(t, u, su, c, sb); t = u = su = c = sb = "" }
    /^[[:space:]]*#/ { next }
    deb822 && /^[[:space:]]*$/ { flush(); next }
    deb822 { k = tolower($1); sub(/^[^:]*:[[:space:]]*/, "")
             if (k == "types:") t = $0; else if (k == "uris:") u = $0; else if (k == "suites:") su = $0
             else if (k == "components:") c = $0; else if (k == "signed-by:") sb = $0; next }
    $1 == "deb" { opts = ""; i = 2
                  if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) opts = opts " " $(i++); opts = opts " " $(i++) }
                  signed = ""; if (match(opts, /signed-by=[^] ]*/)) signed = substr(opts, RSTART, RLENGTH)
                  comps = ""; for (j = i + 2; j <= NF; j++) comps = comps " " $j
                  keep("deb", $i, $(i + 1), comps, signed) }
    END { flush() }' "$@" | sort -u
}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/vfio-engine/fresh-machine
mkdir -p "$cache"
sources_file=$(mktemp "$cache/sources.XXXXXX")
if [[ -n ${VFE_FRESH_APT_SOURCES:-} ]]; then
  [[ -r $VFE_FRESH_APT_SOURCES ]] || die "VFE_FRESH_APT_SOURCES=$VFE_FRESH_APT_SOURCES is not readable"
  bookworm_sources "$VFE_FRESH_APT_SOURCES" >"$sources_file"
else
  host_files=()
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f $f && -r $f ]] && host_files+=("$f")
  done
  ((${#host_files[@]} == 0)) || bookworm_sources "${host_files[@]}" >"$sources_file"
fi
[[ -s $sources_file ]] || { rm -f "$sources_file"
  die "no Debian 12 (bookworm) apt source on this host; set VFE_FRESH_APT_SOURCES to a file with one, e.g. a line 'deb MIRROR bookworm main' plus bookworm-updates and bookworm-security"; }

# --- The minbase tarball, cached: keyed by the sources and the package set; remade after 7 days
# so security updates are not missed. Runs under a lock; the tarball is opened before the lock
# goes, so a concurrent run that replaces it cannot pull it away from under this one.
include=git,ca-certificates
key=$(cat "$sources_file" <(echo "bookworm minbase $include no-hostname") | sha256sum | cut -c1-16)
tarball=$cache/minbase-bookworm-$key.tar
exec 9>"$cache/.lock"
flock 9  # one mmdebstrap at a time per cache
t0=$SECONDS
if [[ ! -s $tarball || -n $(find "$tarball" -mtime +6) ]]; then
  say "making the minbase tarball with mmdebstrap (2 to 3 minutes; cached in $cache)"
  rm -f "$cache"/minbase-bookworm-*.tar "$tarball.part"
  # Its own mount namespace, and gone with this script: mmdebstrap mounts inside the root it makes.
  # shellcheck disable=SC2016  # $1 is the hook's argument, expanded by mmdebstrap
  setpriv --pdeathsig KILL -- unshare --mount --propagation private -- \
    mmdebstrap --quiet --variant=minbase --include="$include" --format=tar \
    --customize-hook='rm -f "$1/etc/hostname"' bookworm "$tarball.part" "$sources_file" ||
    { rm -f "$tarball.part" "$sources_file"; die "mmdebstrap failed (see above)"; }
  mv "$tarball.part" "$tarball"
fi
rm -f "$sources_file"
exec 8<"$tarball"
exec 9>&-  # the lock goes; fd 8 keeps this tarball readable whatever happens to its name

# --- The root, and its removal on every way out.
base=$(realpath -m "${VFE_FRESH_DIR:-/var/tmp}")
mkdir -p "$base"
# nothing_mounted_under DIR: true when no mount point lies in DIR (rm must not reach the host).
# One awk, no pipe; a plain prefix compare (index), no regex; mountinfo escapes spaces as \040.
nothing_mounted_under() {
  awk -v w="$(realpath -m "$1" | sed 's/ /\\040/g')/" 'index($5 "/", w) == 1 { found = 1 } END { exit found }' \
    /proc/self/mountinfo
}
# A root whose script was killed outright (SIGKILL: no trap ran) is removed by the next run.
for stale in "$base"/vfe-fresh.*/; do
  [[ -f $stale/pid ]] || continue
  kill -0 "$(cat "$stale/pid")" 2>/dev/null && continue
  if nothing_mounted_under "${stale%/}" && rm -rf --one-file-system "${stale%/}/root" "${stale%/}"; then
    say "removed ${stale%/}, left by a killed run"
  fi
done
work=$(mktemp -d "$base/vfe-fresh.XXXXXX")
echo $$ >"$work/pid"
root=$work/root
child=

# processes_in_root: PIDs of processes whose root directory is the fresh root.
processes_in_root() {
  find /proc -mindepth 2 -maxdepth 2 -name root -lname "$root" -printf '%h\n' 2>/dev/null || true
}
cleanup() {
  local status=$?
  set +e
  trap '' PIPE HUP INT TERM  # a closed terminal or pipe must not end the cleanup halfway
  trap - EXIT
  if [[ -n $child ]] && kill -0 "$child" 2>/dev/null; then
    say "stopping the command"
    # unshare ignores SIGINT and SIGTERM while it waits; its SIGKILL takes the namespace's first
    # process with it (--kill-child), and with that every process of the PID namespace.
    kill -KILL "$child" 2>/dev/null
    wait "$child" 2>/dev/null
  fi
  local i
  for ((i = 0; i < 100; i++)); do  # they die as the kernel gets to them: wait, up to 10 s
    [[ -z $(processes_in_root) ]] && break
    sleep 0.1
  done
  # The mounts were made in unshare's private mount namespace and died with it. Refuse to
  # delete anything if one is visible here after all: rm would reach through it into the host.
  if ! nothing_mounted_under "$work"; then
    say "something is still mounted under $work; not deleting it (umount -R it, then rm -rf it)"
    exit 2
  fi
  # The root first: interrupted, what is left still has its pid file for the next run's sweep.
  if ! rm -rf --one-file-system "$root" || ! rm -rf --one-file-system "$work"; then
    say "could not remove all of $work; remove it by hand"
    exit 2
  fi
  say "removed $work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

mkdir "$root"
tar -C "$root" --numeric-owner -xpf /proc/self/fd/8
exec 8<&-
[[ $(. "$root/etc/os-release" && echo "$ID $VERSION_ID") == "debian 12" ]] ||
  die "the root made from these sources is not Debian 12 ($(. "$root/etc/os-release" && echo "$PRETTY_NAME"))"
cat /etc/resolv.conf >"$root/etc/resolv.conf"  # the host's resolver, so apt reaches the mirror
GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null git clone --quiet --no-hardlinks "$repo" "$root/root/vfio-engine"
git -C "$root/root/vfio-engine" checkout --quiet --detach "$head"
say "root ready in $((SECONDS - t0)) s: $root (Debian 12 minbase + $include, HEAD ${head:0:12})"

# --- CMD: in its own mount and PID namespaces, so its mounts and its processes cannot outlive it,
# even when this script is killed outright (setpriv --pdeathsig: unshare goes when we go). The
# shell that mounts stays as the namespace's first process and reaps; CMD gets SIGINT and
# SIGQUIT back (a background job starts with them ignored) and no descriptor of ours beyond 2.
t1=$SECONDS
# shellcheck disable=SC2016  # expanded by the inner shells
setpriv --pdeathsig KILL -- unshare --mount --propagation private --pid --fork --kill-child -- /bin/bash -c '
  r=$1; shift
  for fd in /dev/fd/*; do  # no descriptor of the caller beyond stdin, stdout and stderr
    fd=${fd##*/}; ((fd <= 2)) || eval "exec $fd>&-" 2>/dev/null || true
  done
  { mount -t proc proc "$r/proc" && mount -t sysfs sysfs "$r/sys" && mount --rbind /dev "$r/dev" &&
    mount -t tmpfs -o mode=1777 tmpfs "$r/dev/shm" && mount -t tmpfs -o mode=755 tmpfs "$r/run"; } ||
    { echo "fresh-machine: could not mount proc, sys, dev or run in the root" >&2; exit 125; }
  chroot "$r" /usr/bin/env -i --default-signal=INT,QUIT HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /bin/bash -c "cd /root/vfio-engine && exec \"\$@\"" fresh-machine "$@"
  status=$?
  exit "$status"
' fresh-machine "$root" "$@" </dev/null &
child=$!
status=0
wait "$child" || status=$?
child=
if ((status == 125)); then
  say "the namespace for '$*' could not be set up"
else
  say "'$*' exited $status after $((SECONDS - t1)) s"
fi
exit "$status"

#!/usr/bin/env bash
# get-gdb.sh DEST
#
# Put a working gdb with Python scripting (Debian trixie's, 16.x, linked with its own
# libpython3.13) under DEST on a Debian 12 (bookworm) machine, for `suture attach`.
#
# Why: bookworm's gdb 13.1 cannot make an inferior call on a CPU with AMX (amx_tile in
# /proc/cpuinfo): it writes the registers back from a fixed-size XSAVE buffer that is too
# small for the AMX tile state, and every `call` fails with "Couldn't write extended
# state status: Bad address." (fixed in later gdb). `suture attach` is made of inferior
# calls, so it cannot work with that gdb there. See docs/live-processes.md, "Attach".
#
# How (nothing is installed into the system): the .debs of gdb and of the closure of its
# shared-library dependencies are downloaded from trixie with apt-get under a private
# configuration (own sources list, lists dir, cache, empty dpkg status) and unpacked with
# dpkg-deb -x. trixie's binaries need a newer glibc than bookworm's, so trixie's libc6 is
# unpacked too and the real gdb binary is patched with patchelf (PT_INTERP -> DEST's
# ld.so, DT_RPATH -> DEST's libdir): it never loads a library of the system's, and what it
# starts (a shell, an inferior) uses the system's libc as usual. patchelf is taken from
# PATH, else bookworm's .deb is unpacked under DEST (never installed).
#
# Result:  DEST/bin/gdb, a small wrapper (see the end of this file) around
#          DEST/libexec/gdb/gdb: it gives the embedded Python its standard library
#          (PYTHONHOME=DEST) and its libc its iconv modules (GCONV_PATH), both removed
#          again from the environment gdb gives programs it starts,
#          and gdb its data directory (DEST/share/gdb: the `gdb` Python package, syscall
#          names). Put DEST/bin first on PATH and `suture attach` uses it unchanged.
#          DEST is readable and executable by every user: `suture attach` run by root
#          against another user's process runs gdb as that user.
# Idempotent: a DEST whose gdb already passes the self-check is reused as it is.
# DEST must stay where it is (PT_INTERP and RPATH are absolute); remove it and rerun
# to move it.
#
# Environment: DEBIAN_MIRROR (default: the first Debian archive URI in the machine's
#              own apt sources), DEBIAN_SUITE (trixie),
#              KEEP_DEBS=1 keeps DEST/.get-gdb (downloaded .debs, apt lists).
# Exit status: 0 and the wrapper's path on stdout, or 1 and one line saying why.
#
#   get-gdb.sh --check [GDB]   only the self-check (below) of GDB, default the gdb on PATH
set -euo pipefail

die() { echo "get-gdb.sh: $*" >&2; exit 1; }
log() { echo "get-gdb.sh: $*" >&2; }

# The self-check: gdb has Python, and it can make an inferior call (the thing bookworm's
# gdb cannot do on AMX CPUs) in a `sleep` it starts itself and kills. It starts the
# process rather than attaching, so that Yama's ptrace_scope=1 (only parents may trace)
# cannot make a good gdb look broken. On failure WHY says what went wrong.
WHY=
works() {
    local out sleep
    sleep=$(command -v sleep) || { WHY="no sleep on PATH"; return 1; }
    out=$(cd / && timeout 60 "$1" -nx -nh -batch \
              -ex 'python import gdb; print("py-ok", gdb.VERSION)' \
              -ex 'set startup-with-shell off' \
              -ex 'catch syscall clock_nanosleep' -ex run \
              -ex 'print (int)getpid()' -ex kill --args "$sleep" 5 </dev/null 2>&1) || true
    if ! grep -q '^py-ok ' <<<"$out"; then
        WHY="$1 has no working Python ($(grep -m1 -i 'python' <<<"$out" || tail -n1 <<<"$out"))"
        return 1
    fi
    if ! grep -Eq '^\$1 = [1-9][0-9]*$' <<<"$out"; then
        WHY="$1 cannot make an inferior call ($(grep -Ev '^(py-ok|Kill the program|\[Inferior )' <<<"$out" | tail -n1))"
        return 1
    fi
}

# get-gdb.sh --check [GDB]: only the self-check, of GDB (default: gdb on PATH); exit 0
# when it passes, else 1 with the reason on stdout. scripts/test.sh uses it.
if [ "${1:-}" = --check ]; then
    [ $# -le 2 ] || die "usage: get-gdb.sh --check [GDB]"
    g=$(command -v "${2:-gdb}") || { echo "no ${2:-gdb} on PATH"; exit 1; }
    works "$g" || { echo "$WHY"; exit 1; }
    exit 0
fi

[ $# -eq 1 ] || die "usage: get-gdb.sh DEST   (e.g. get-gdb.sh .cache/gdb), or get-gdb.sh --check [GDB]"
DEST=$(realpath -m -- "$1")
GDB=$DEST/bin/gdb
REAL=$DEST/libexec/gdb/gdb

# What a finished DEST records in .get-gdb-done; bump it when the layout or the wrapper
# changes, so that an older DEST is rebuilt rather than reused.
LAYOUT="get-gdb layout 2"
if [ "$(cat "$DEST/.get-gdb-done" 2>/dev/null)" = "$LAYOUT" ] && [ -x "$GDB" ]; then
    if works "$GDB"; then
        log "reusing $GDB ($("$GDB" -nx -batch -ex 'python print(gdb.VERSION)' 2>/dev/null))"
        echo "$GDB"
        exit 0
    fi
    log "$GDB exists but fails its self-check ($WHY): rebuilding $DEST"
fi
case "$DEST" in *"'"*) die "DEST must not contain a single quote (it is quoted in the wrapper)" ;; esac
case "$DEST" in
    /|/usr|/usr/*|/bin|/lib|/etc|/home|/root|/opt) die "refusing DEST=$DEST: give a directory of its own" ;;
esac
if [ -e "$DEST" ] && [ -n "$(ls -A "$DEST" 2>/dev/null)" ] && [ ! -e "$DEST/.get-gdb-dest" ]; then
    die "$DEST exists, is not empty and was not made by get-gdb.sh; remove it or choose another DEST"
fi

apt_uri() {   # the machine's own Debian archive, from deb822 or one-line sources
    { grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
      grep -h '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}'
    } 2>/dev/null | grep -v -- '-security' | grep '/debian/*$' | head -n1 || true
}
MIRROR=${DEBIAN_MIRROR:-$(apt_uri)}
[ -n "$MIRROR" ] || die "no Debian archive in the apt sources; set DEBIAN_MIRROR"
SUITE=${DEBIAN_SUITE:-trixie}

case "$(uname -m)" in
    x86_64)  ARCH=amd64; MA=x86_64-linux-gnu ;;
    aarch64) ARCH=arm64; MA=aarch64-linux-gnu ;;
    *) die "unsupported machine $(uname -m)" ;;
esac
for tool in apt-get apt-cache dpkg-deb realpath timeout; do
    command -v "$tool" >/dev/null || die "$tool not found (this script is for Debian)"
done

# Start from scratch: a half-built DEST from an interrupted run is not trusted.
rm -rf "$DEST"
# 0755 whatever the caller's umask: gdb may run as the target's user (see above).
umask 022
mkdir -p "$DEST"
: > "$DEST/.get-gdb-dest"
WORK=$DEST/.get-gdb
mkdir -p "$WORK/lists/partial" "$WORK/debs" "$WORK/stage" "$WORK/cache/archives/partial" \
         "$WORK/empty.d"
printf 'deb %s %s main\n' "$MIRROR" "$SUITE" > "$WORK/sources.list"
: > "$WORK/empty-status"
APT=(-o "Dir::Etc::sourcelist=$WORK/sources.list" -o "Dir::Etc::sourceparts=$WORK/empty.d"
     -o "Dir::State::Lists=$WORK/lists" -o "Dir::State::status=$WORK/empty-status"
     -o "Dir::Cache=$WORK/cache" -o "Dir::Etc::preferencesparts=$WORK/empty.d"
     -o "Dir::Etc::preferences=/dev/null" -o "APT::Architecture=$ARCH"
     -o "APT::Sandbox::User=root" -o "Debug::NoLocking=1"
     -o "Acquire::Languages=none"
     # the machine's apt.conf may turn apt's binary cache off (a container's usual
     # docker-clean); without it each apt-cache call below re-parses trixie's lists
     -o "Dir::Cache::pkgcache=pkgcache.bin" -o "Dir::Cache::srcpkgcache=srcpkgcache.bin")

log "apt-get update ($SUITE from $MIRROR)"
apt-get "${APT[@]}" -qq update || die "apt-get update of $SUITE failed"

# ---- which packages: gdb, plus the shared libraries it needs (closure). Only lib*
# packages are followed: the others a library depends on (media-types, tzdata, debconf,
# krb5-config...) carry data or maintainer scripts gdb does not need.
roots=(gdb libc6 libgcc-s1)
for p in "${roots[@]}"; do
    apt-cache "${APT[@]}" show "$p" >/dev/null 2>&1 || die "$SUITE has no package $p"
done
declare -A seen=()
queue=("${roots[@]}")
while [ ${#queue[@]} -gt 0 ]; do
    p=${queue[0]}; queue=("${queue[@]:1}")
    [ -n "${seen[$p]:-}" ] && continue
    seen[$p]=1
    while read -r dep; do
        dep=${dep%%:*}                         # drop :any / :amd64
        [ -n "${seen[$dep]:-}" ] && continue
        case "$dep" in
            lib*-dev|libc-bin|libc-dev-bin|libc6-dev|linux-libc-dev|libcrypt-dev) continue ;;
            lib*|zlib1g) queue+=("$dep") ;;
        esac
    done < <(apt-cache "${APT[@]}" depends --no-recommends --no-suggests --no-conflicts \
                 --no-breaks --no-replaces --no-enhances "$p" 2>/dev/null |
             sed -n 's/^ *|\{0,1\}\(Pre\)\{0,1\}Depends: \([^<> ]*\)$/\2/p')
done
pkgs=("${!seen[@]}")
log "packages (${#pkgs[@]}): $(printf '%s\n' "${pkgs[@]}" | sort | tr '\n' ' ')"

log "downloading"
( cd "$WORK/debs" && apt-get "${APT[@]}" -qq download "${pkgs[@]}" ) || die "apt-get download failed"

log "unpacking"
for deb in "$WORK"/debs/*.deb; do dpkg-deb -x "$deb" "$WORK/stage" || die "cannot unpack $deb"; done

# ---- lay out DEST as the unpacked /usr (plus /lib, /lib64 of packages not yet merged)
S=$WORK/stage
cp -a "$S/usr/." "$DEST/"
for d in lib lib64; do
    if [ -d "$S/$d" ] && [ ! -L "$S/$d" ]; then mkdir -p "$DEST/$d"; cp -a "$S/$d/." "$DEST/$d/"; fi
done
# absolute symlinks (/usr/..., /lib/...) -> into DEST, so nothing resolves into the system
while IFS= read -r -d '' l; do
    t=$(readlink "$l")
    case "$t" in
        /usr/*) n=$DEST/${t#/usr/} ;;
        /lib/*|/lib64/*) n=$DEST$t ;;
        *) continue ;;
    esac
    if [ -e "$n" ]; then ln -sfn "$n" "$l"; fi
done < <(find "$DEST" -path "$WORK" -prune -o -type l -print0)

LIBDIR=$DEST/lib/$MA
LDSO=$(ls "$LIBDIR"/ld-linux*.so.* 2>/dev/null | head -n1)
[ -n "$LDSO" ] && [ -x "$LDSO" ] || die "no ld.so in $LIBDIR"
[ -f "$DEST/bin/gdb" ] || die "no bin/gdb in the gdb package"
PYVER=$(cd "$DEST/lib" && ls -d python3.* 2>/dev/null | sort -V | tail -n1)
[ -n "$PYVER" ] && [ -f "$DEST/lib/$PYVER/os.py" ] || die "no Python standard library in $DEST/lib"
[ -d "$LIBDIR/gconv" ] || die "no $LIBDIR/gconv (libc6's iconv modules)"
[ -d "$DEST/share/gdb/python/gdb" ] || die "no share/gdb/python/gdb (gdb's data directory)"

# ---- patchelf: from PATH, else bookworm's .deb via the system's apt lists, else via a
# private bookworm list. Unpacked under WORK, never installed.
PATCHELF=$(command -v patchelf || true)
PW=$WORK/patchelf; mkdir -p "$PW"
if [ -z "$PATCHELF" ] && ( cd "$PW" && apt-get -qq download patchelf ) >/dev/null 2>&1; then
    dpkg-deb -x "$PW"/patchelf_*.deb "$PW/root"; PATCHELF=$PW/root/usr/bin/patchelf
fi
if [ -z "$PATCHELF" ]; then
    mkdir -p "$PW/lists/partial"
    printf 'deb %s bookworm main\n' "$MIRROR" > "$PW/sources.list"
    B=("${APT[@]}" -o "Dir::Etc::sourcelist=$PW/sources.list" -o "Dir::State::Lists=$PW/lists")
    { apt-get "${B[@]}" -qq update && ( cd "$PW" && apt-get "${B[@]}" -qq download patchelf ); } \
        || die "could not get patchelf: apt-get install patchelf"
    dpkg-deb -x "$PW"/patchelf_*.deb "$PW/root"; PATCHELF=$PW/root/usr/bin/patchelf
fi
log "patchelf: $PATCHELF ($("$PATCHELF" --version))"

# The real binary moves out of bin/, where the wrapper takes its name. gdb finds its
# data directory relative to its own location (../share/gdb from libexec/gdb would be
# wrong), hence the explicit --data-directory in the wrapper.
mkdir -p "$(dirname "$REAL")"
mv "$DEST/bin/gdb" "$REAL"
# DT_RPATH, not RUNPATH: it also applies to what gdb dlopen()s later (libpython's
# lib-dynload/*.so -> libssl, libffi...), so trixie's libraries win over bookworm's.
"$PATCHELF" --set-interpreter "$LDSO" "$REAL"
"$PATCHELF" --force-rpath --set-rpath "$LIBDIR" "$REAL"

# ---- the wrapper. PYTHONHOME: trixie's libpython would otherwise look for its standard
# library in /usr/lib/python3.13 (absent on bookworm) and gdb would abort at start.
# GCONV_PATH: trixie's libc would otherwise load bookworm's iconv modules (gdb converts
# target strings with iconv), built against another glibc's private ABI.
# `-iex 'unset environment ...'` keeps both from the programs gdb starts itself (`run`;
# `suture attach` starts none: the target already runs, its environment is its own);
# gdb's `shell` command does see them. Rejected: LD_LIBRARY_PATH (it would give the
# shell and every program gdb starts trixie's libc), a copy of the stdlib under /usr/lib
# (the system). The wrapper is plain sh and computes nothing: the paths are fixed now.
cat > "$GDB" <<EOF
#!/bin/sh
# Made by scripts/get-gdb.sh: Debian $SUITE's gdb with its own libc and Python.
PYTHONHOME='$DEST'
GCONV_PATH='$LIBDIR/gconv'
export PYTHONHOME GCONV_PATH
exec '$REAL' --data-directory='$DEST/share/gdb' \\
    -iex 'unset environment PYTHONHOME' -iex 'unset environment GCONV_PATH' "\$@"
EOF
chmod 0755 "$GDB"

# every directory on the way must let the target's user in (DEST's parents are the
# caller's business: say so rather than change them)
chmod -R go+rX "$DEST"
p=$(dirname "$DEST")
while [ "$p" != / ]; do
    [ -n "$(find "$p" -maxdepth 0 -perm -o+x)" ] \
        || log "note: $p is not searchable by other users; root cannot attach to their processes with this gdb"
    p=$(dirname "$p")
done

works "$GDB" || die "the new gdb fails its self-check: $WHY"
[ "${KEEP_DEBS:-0}" = 1 ] || rm -rf "$WORK"
echo "$LAYOUT" > "$DEST/.get-gdb-done"
log "ready: $GDB ($("$GDB" -nx -batch -ex 'python print(gdb.VERSION)' 2>/dev/null))"
echo "$GDB"

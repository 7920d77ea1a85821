#!/usr/bin/env bash
# Run the static checks and the whole test suite on every supported CPython (3.9-3.15),
# each in its own virtual environment built from uv.lock. Extra arguments go to pytest.
# The checks (mypy --strict and ruff, configured in pyproject.toml) run in every
# environment: the runtime must type-check against each version's stdlib.
#   bash scripts/test.sh                 # everything, every version
#   SUTURE_PYTHONS="3.11" bash scripts/test.sh -k cases
# A missing interpreter is a failure, never a skip.
set -uo pipefail
cd "$(dirname "$0")/.."

# pyenv only exposes python3.X shims for versions named here (FIELD-NOTES: "This machine").
export PYENV_VERSION="${PYENV_VERSION:-3.11.7:3.9.18:3.10.13:3.12.1:3.13.0}"
export UV_PYTHON_DOWNLOADS=never UV_PYTHON_PREFERENCE=only-system
if ! command -v uv >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check "uv>=0.5,<1" || exit 1
    hash -r
fi

# `suture attach` (tests/agent/test_attach.py) needs a gdb that can make inferior calls.
# Debian 12's gdb 13.1 cannot on CPUs with AMX ("Couldn't write extended state status:
# Bad address."), so when the gdb on PATH fails scripts/get-gdb.sh's self-check (or there
# is none), put trixie's gdb, unpacked into .cache/gdb, first on PATH for the runs below.
# A gdb that passes is used as it is. If get-gdb.sh cannot help (no network, not
# Debian), say so and go on: the attach tests then skip (no gdb) or fail with gdb's error.
# Root's attach tests run gdb as uid 65534, which must reach it: when the checkout's
# directories are not searchable by others (a clone under /root), the gdb goes to a
# private temporary directory removed at exit (downloaded each run) rather than a fixed
# shared path another user could have prepared.
searchable() {   # every directory from / to $1 has o+x
    local d=$1
    while [ "$d" != / ]; do
        [ -n "$(find "$d" -maxdepth 0 -perm -o+x 2>/dev/null)" ] || return 1
        d=$(dirname "$d")
    done
}
if ! why=$(bash scripts/get-gdb.sh --check); then
    gdb_dest=.cache/gdb
    if [ "$(id -u)" = 0 ] && ! searchable "$PWD"; then
        gdb_tmp=$(mktemp -d) && chmod 0755 "$gdb_tmp" && trap 'rm -rf "$gdb_tmp"' EXIT
        gdb_dest=$gdb_tmp/gdb
    fi
    echo "test.sh: $why: using trixie's gdb from scripts/get-gdb.sh ($gdb_dest)"
    if gdb_path=$(bash scripts/get-gdb.sh "$gdb_dest"); then
        export PATH="$(dirname "$gdb_path"):$PATH"
    else
        echo "test.sh: scripts/get-gdb.sh failed (above); the attach tests will fail or skip"
    fi
fi

versions="${SUTURE_PYTHONS:-3.9 3.10 3.11 3.12 3.13 3.14 3.15}"

# CPython 3.14 and 3.15 are not in pyenv here. When no python3.X is on PATH, scripts/get-python.sh
# unpacks Debian's build into a cache outside the checkout (another clone, or a rerun, reuses
# it: ~1 min each the first time, both at once). A ".ok" stamp marks a finished install; one
# without it (an interrupted run) is made again. flock keeps two runs from racing.
py_cache="${SUTURE_PYTHON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/suture/python}"
get_python() {   # get_python 3.14 -> its bin directory on stdout, its log on stderr
    local v=$1 dest=$py_cache/$1
    (
        flock 9
        if [ ! -e "$dest/.ok" ] || ! "$dest/bin/python$v" -c pass 2>/dev/null; then
            rm -rf "$dest"
            bash scripts/get-python.sh "$v" "$dest" >"$py_cache/$v.log" 2>&1 \
                || { tail -n 20 "$py_cache/$v.log" >&2; exit 1; }
            # Debian compiles the stdlib's bytecode in its install scripts, which dpkg -x does
            # not run: without this, with PYTHONDONTWRITEBYTECODE=1 (below), every process
            # would compile its stdlib imports again (0.4 s of CPU per `suture --version`).
            "$dest/bin/python$v" -m compileall -q -j 0 "$dest/lib/python$v" >/dev/null 2>&1
            touch "$dest/.ok"
        fi
    ) 9>"$py_cache/$v.lock" || return 1
    echo "$dest/bin"
}
fetch=()
for v in $versions; do
    case $v in 3.9|3.10|3.11|3.12|3.13) continue ;; esac
    command -v "python$v" >/dev/null 2>&1 && continue
    fetch+=("$v")
done
if [ ${#fetch[@]} -gt 0 ]; then
    echo "test.sh: CPython ${fetch[*]} from scripts/get-python.sh, cached in $py_cache"
    mkdir -p "$py_cache" || exit 1
    declare -A jobs=()
    for v in "${fetch[@]}"; do get_python "$v" >"$py_cache/$v.bin" & jobs[$v]=$!; done
    for v in "${fetch[@]}"; do
        if wait "${jobs[$v]}"; then
            export PATH="$(cat "$py_cache/$v.bin"):$PATH"
        else
            echo "test.sh: could not make CPython $v (above); its run will fail"
        fi
    done
fi
# Bytecode: installers compile it (pip does by default), but uv does not unless asked, and
# this machine's environment sets PYTHONDONTWRITEBYTECODE=1, so without this step each of the
# suite's many `python -m suture` subprocesses compiled click, cryptography and Suture from
# source again: 0.6 s of CPU each instead of 0.13 s (test_cli_exit_codes.py: 10.8 s of CPU
# without, 3.7 s with). The environment and src/ are compiled once per version;
# PYTHONDONTWRITEBYTECODE stays as the caller set it, so the modules tests write and rewrite
# in temporary directories are never cached (a .pyc is validated by mtime in seconds and
# size: a rewrite within the same second could run stale code).
#
# Two versions at a time (SUTURE_JOBS, default: the number of CPUs, at most 2): one version's
# suite keeps about one CPU busy (half of two was idle, measured with vmstat), and seven
# versions one after another took about an hour on two CPUs. Each version writes its own log
# under .cache/test-logs and prints it whole when it ends, so the output stays readable. Each
# version has its own environment, mypy cache and pytest temporary directory; ruff and
# pytest run without their caches (shared files).
one_version() {   # one_version 3.X PYTEST_ARGS...: its static checks and suite, log on stdout
    local v=$1; shift
    local run=(env UV_PROJECT_ENVIRONMENT=".venvs/py$v" uv run --quiet --locked --python "$v" --extra test --)
    env UV_PROJECT_ENVIRONMENT=".venvs/py$v" uv sync --quiet --locked --python "$v" --extra test \
        --compile-bytecode || return 1
    "${run[@]}" python -m compileall -q -j 0 src benchmarks >/dev/null || echo "test.sh: compileall failed"
    "${run[@]}" python -m mypy || return 1
    "${run[@]}" python -m ruff check --quiet --no-cache . || return 1
    "${run[@]}" python -m pytest -p no:cacheprovider "$@"
}
jobs=${SUTURE_JOBS:-$(nproc 2>/dev/null || echo 1)}
[ "$jobs" -gt 2 ] 2>/dev/null && [ -z "${SUTURE_JOBS:-}" ] && jobs=2
logs=.cache/test-logs
trap 'kill 0 2>/dev/null' INT TERM   # Ctrl-C or a CI timeout stops every version's run
rm -rf "$logs" && mkdir -p "$logs" || exit 1
queue=($versions)
running=()
next=0
start_one() {
    local v=${queue[$next]}
    next=$((next + 1))
    echo "=== Python $v: started $(date +%H:%M:%S)"
    ( SECONDS=0
      one_version "$v" "$@" >"$logs/py$v.log" 2>&1
      rc=$?
      echo "$rc" >"$logs/py$v.rc"
      { echo "=== Python $v: $([ "$rc" = 0 ] && echo passed || echo FAILED) in ${SECONDS} s"
        cat "$logs/py$v.log"; } | { flock 9; cat; } 9>"$logs/.out.lock"
    ) &
    running+=($!)
}
while [ "$next" -lt "${#queue[@]}" ] || [ "${#running[@]}" -gt 0 ]; do
    while [ "$next" -lt "${#queue[@]}" ] && [ "${#running[@]}" -lt "$jobs" ]; do
        start_one "$@"
    done
    wait -n 2>/dev/null || true
    alive=()
    for pid in "${running[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    running=("${alive[@]+"${alive[@]}"}")
done
failed=""
for v in $versions; do
    [ "$(cat "$logs/py$v.rc" 2>/dev/null)" = 0 ] || failed="$failed $v"
done
if [ -n "$failed" ]; then
    echo "FAILED on Python:$failed"
    exit 1
fi
echo "all Python versions passed: $versions"

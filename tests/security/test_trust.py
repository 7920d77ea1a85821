"""Trust (issue 13, findings 3 and 4), attacked with real processes and real files.

Finding 3: a key trusted only for distribution ``alpha`` signs a patch whose target says
``alpha`` but whose module is ``beta.core`` (another installed distribution). ``verify``,
``apply --pid`` and ``install`` + the agent's auto-apply must each refuse it, and beta's
code must stay unpatched; a genuine alpha patch by the same key still applies.

Finding 4: ``trust.toml`` was checked by path and then opened by path, and its
directories were never checked. A policy swapped for a symlink while it is read, a
group-writable directory above it, or a directory owned by another user (uid 65534) must
be refused with SUT-E111 (``daemon.toml`` shares the check: SUT-E115).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from suture.runtime import store
from suture.runtime.patchfile import dump, load
from suture.tooling.fleet import daemon
from suture.tooling import trust
from suture.tooling.build import build_trees
from suture.tooling.build.sources import materialize

from agentutil import SRC, Targets, result, wait_for

KEY = Ed25519PrivateKey.generate()          # the alpha publisher's key
OTHER = Ed25519PrivateKey.generate()        # a key trusted for any patch
TIMEOUT = 20.0

# The target imports alpha.core (and beta.core unless --lazy), starts its agent, then
# answers each line on stdin with the values both modules return now.
TARGET = r'''
import sys
import suture.agent
import alpha.core
if "--lazy" not in sys.argv:
    import beta.core
suture.agent.start()
for line in sys.stdin:
    import beta.core
    print(alpha.core.value(), beta.core.value(), flush=True)
'''

# The same, but alpha.core too is imported only at the first line on stdin.
LATE_ALPHA = r'''
import sys
import suture.agent
suture.agent.start()
for line in sys.stdin:
    import alpha.core, beta.core
    print(alpha.core.value(), beta.core.value(), flush=True)
'''


# ---------------------------------------------------------------- helpers

def core(pkg: str, value: str) -> Dict[str, str]:
    return {f"{pkg}/__init__.py": "", f"{pkg}/core.py": f"def value():\n    return {value!r}\n"}


def install_dist(site: Path, name: str, files: Dict[str, str], version: str = "1.0") -> None:
    """Lay out ``files`` in ``site`` as pip would: with a dist-info and its RECORD."""
    for rel, text in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text, encoding="utf-8")
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    record = [f"{rel},," for rel in files] + [f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]
    (info / "RECORD").write_text("\n".join(record) + "\n")


def plain_dir(root: Path, files: Dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


def patch_file(tmp: Path, pkg: str, new: str, dist: str, key: Ed25519PrivateKey) -> Path:
    """A signed patch of ``pkg``'s core (its value -> ``new``) that says it is ``dist`` 1.0->1.1."""
    tag = f"{pkg}-{new}-{dist}"
    v1 = plain_dir(tmp / "trees" / tag / "v1", core(pkg, f"{pkg}-1"))
    v2 = plain_dir(tmp / "trees" / tag / "v2", core(pkg, new))
    report = build_trees(materialize(str(v1)), materialize(str(v2)))
    assert report.data is not None
    data = dump(replace(load(report.data), target={"kind": "distribution", "name": dist,
                                                   "from_version": "1.0",
                                                   "to_version": "1.1"}))
    out = tmp / f"{tag}.suture"
    out.write_bytes(trust.sign(data, key))
    return out


class Host:
    """One host: a site with alpha and beta installed, a trust policy, targets, the CLI."""

    def __init__(self, tmp: Path, targets: Targets, metadata: bool = True) -> None:
        self.tmp, self.targets = tmp, targets
        self.site = tmp / "site"
        if metadata:
            install_dist(self.site, "alpha", core("alpha", "alpha-1"))
            install_dist(self.site, "beta", core("beta", "beta-1"))
        else:                           # both packages from a plain directory on sys.path
            plain_dir(self.site, {**core("alpha", "alpha-1"), **core("beta", "beta-1")})
        self.cfg = tmp / "cfg"
        self.cfg.mkdir(mode=0o700)
        trust.add_key(trust.public_key_line(KEY.public_key()), "alpha-publisher", ["alpha"],
                      path=str(self.cfg / trust.POLICY_FILE))
        self.attack = patch_file(tmp, "beta", "beta-PWNED", "alpha", KEY)
        self.legit = patch_file(tmp, "alpha", "alpha-2", "alpha", KEY)

    def env(self, with_site: bool = True) -> Dict[str, str]:
        return self.targets.env([str(self.site)] if with_site else [],
                                SUTURE_CONFIG_DIR=str(self.cfg))

    def cli(self, *args: str, with_site: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "suture", *args], env=self.env(with_site),
                              capture_output=True, text=True, timeout=60)

    def start(self, *flags: str) -> subprocess.Popen:
        script = self.targets.script(TARGET)
        proc = self.targets.start([sys.executable, str(script), *flags], self.env(),
                                  stdin=subprocess.PIPE)
        self.targets.wait_agent(proc.pid, proc)
        return proc


def values(proc: subprocess.Popen) -> List[str]:
    """What alpha.core.value() and beta.core.value() return in ``proc`` now."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    ready, _, _ = select.select([proc.stdout], [], [], TIMEOUT)
    assert ready, "the target did not answer"
    return proc.stdout.readline().split()


@pytest.fixture
def host(tmp_path: Path, targets: Targets, monkeypatch: pytest.MonkeyPatch) -> Host:
    monkeypatch.setenv("SUTURE_STATE_DIR", str(targets.root / "state"))
    monkeypatch.setenv("SUTURE_CONFIG_DIR", str(tmp_path / "cfg"))
    return Host(tmp_path, targets)


def error_code(out: str) -> Optional[str]:
    return json.loads(out).get("error", {}).get("code")


# ---------------------------------------------------------------- finding 3: verify

@pytest.mark.slow
def test_verify_refuses_a_restricted_key_patching_another_distribution(host: Host):
    # This environment has alpha 1.0, the patch's baseline: verify checks here too.
    got = host.cli("verify", str(host.attack), "--json", with_site=True)
    assert got.returncode == 2, got.stdout + got.stderr
    verdict = json.loads(got.stdout)
    assert verdict["trusted"] is False and verdict["restricted_to"] == "alpha"
    assert verdict["membership"]["checked_here"] is True
    refused = verdict["membership"]["refused"]
    assert refused["code"] == "SUT-E116"
    assert [m["module"] for m in refused["details"]["modules"]] == ["beta.core"]
    assert refused["details"]["modules"][0]["file"] == os.path.realpath(
        host.site / "beta" / "core.py")
    text = host.cli("verify", str(host.attack), with_site=True)
    assert text.returncode == 2 and "beta.core" in text.stderr and "SUT-E116" not in text.stdout
    # The genuine alpha patch passes, and says where membership was checked.
    ok = host.cli("verify", str(host.legit), with_site=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "modules: checked here against alpha 1.0's RECORD" in ok.stdout


@pytest.mark.slow
def test_verify_does_not_claim_a_membership_it_could_not_check(host: Host):
    # Without alpha installed here, verify cannot know: it says so, and that each target
    # checks. (The targets' refusal is the next tests.)
    got = host.cli("verify", str(host.attack))
    assert got.returncode == 0, got.stdout + got.stderr
    assert "modules: not checked here: alpha is not installed here" in got.stdout
    assert "trusted only for alpha: each target refuses it unless" in got.stdout


# ---------------------------------------------------------------- finding 3: apply --pid

@pytest.mark.slow
@pytest.mark.parametrize("flags", [(), ("--lazy",)], ids=["beta-loaded", "beta-pending"])
def test_apply_pid_refuses_a_restricted_key_patching_another_distribution(host: Host,
                                                                          flags: tuple):
    proc = host.start(*flags)
    # Without alpha here the CLI cannot check; the target does (SUT-E116, exit 2).
    got = host.cli("apply", str(host.attack), "--pid", str(proc.pid), "--json")
    assert got.returncode == 2, got.stdout + got.stderr
    [row] = json.loads(got.stdout)["processes"]
    assert (row["outcome"], row["code"]) == ("refused", "SUT-E116"), row
    assert result(host.targets.sock(proc.pid), "status")["patches"] == []
    assert values(proc) == ["alpha-1", "beta-1"]            # beta is not patched
    # The same key's genuine alpha patch applies.
    got = host.cli("apply", str(host.legit), "--pid", str(proc.pid), "--json")
    assert got.returncode == 0, got.stdout + got.stderr
    assert values(proc) == ["alpha-2", "beta-1"]


@pytest.mark.slow
def test_a_module_imported_later_from_another_file_is_not_patched(host: Host):
    # alpha.core is pending at apply (its name maps to alpha's RECORD), but what the import
    # system finds first is a copy outside the distribution: refused at import.
    shadow = plain_dir(host.tmp / "shadow", core("alpha", "alpha-1"))
    script = host.targets.script(LATE_ALPHA)
    env = host.targets.env([str(shadow), str(host.site)], SUTURE_CONFIG_DIR=str(host.cfg))
    proc = host.targets.start([sys.executable, str(script), "--lazy"], env,
                              stdin=subprocess.PIPE)
    host.targets.wait_agent(proc.pid, proc)
    got = host.cli("apply", str(host.legit), "--pid", str(proc.pid), "--json")
    assert got.returncode == 0, got.stdout + got.stderr
    assert json.loads(got.stdout)["processes"][0]["outcome"] == "pending import"
    assert values(proc) == ["alpha-1", "beta-1"]
    [patch] = result(host.targets.sock(proc.pid), "status")["patches"]
    state = patch["modules"]["alpha.core"]
    assert state.startswith("refused at import: Refused patch "), state
    assert os.path.realpath(shadow / "alpha" / "core.py") in state


# ---------------------------------------------------------------- finding 3: install

@pytest.mark.slow
def test_install_then_auto_apply_refuses_a_restricted_key_patching_another_distribution(
        host: Host):
    for f in (host.attack, host.legit):
        got = host.cli("install", str(f))
        assert got.returncode == 0, got.stdout + got.stderr
    # The record tells agents that only restricted keys vouch for these patches.
    assert {r["trust"].get("restricted_to") for r in store.installed()} == {"alpha"}
    attack_id, legit_id = (load(f.read_bytes()).id for f in (host.attack, host.legit))
    proc = host.start()

    def outcomes() -> Dict[str, str]:
        return {r["patch_id"]: r["result"] for r in store.audit_log()
                if r["pid"] == proc.pid and r["op"] == "auto-apply"
                and r["result"] != "applying"}
    got = wait_for(lambda: len(outcomes()) == 2 and outcomes(), "both auto-apply rows",
                   timeout=TIMEOUT, proc=proc)
    assert got == {attack_id: "refused SUT-E116", legit_id: "applied"}
    assert values(proc) == ["alpha-2", "beta-1"]


# ---------------------------------------------------------------- finding 3: no metadata

@pytest.mark.slow
def test_restricted_trust_needs_metadata_in_the_target(tmp_path: Path, targets: Targets,
                                                      monkeypatch: pytest.MonkeyPatch):
    # alpha and beta run from a plain directory: nothing proves which files are alpha's.
    monkeypatch.setenv("SUTURE_STATE_DIR", str(targets.root / "state"))
    host = Host(tmp_path, targets, metadata=False)
    proc = host.start()
    for f in (host.attack, host.legit):
        got = host.cli("apply", str(f), "--pid", str(proc.pid), "--json")
        assert got.returncode == 2, got.stdout + got.stderr
        [row] = json.loads(got.stdout)["processes"]
        assert (row["outcome"], row["code"]) == ("refused", "SUT-E117"), row
    assert values(proc) == ["alpha-1", "beta-1"]
    # A key trusted for any patch may patch what it likes; the result says it was unchecked.
    trust.add_key(trust.public_key_line(OTHER.public_key()), "ops",
                  path=str(host.cfg / trust.POLICY_FILE))
    broad = patch_file(tmp_path, "alpha", "alpha-3", "alpha", OTHER)
    got = host.cli("apply", str(broad), "--pid", str(proc.pid), "--json")
    assert got.returncode == 0, got.stdout + got.stderr
    [row] = json.loads(got.stdout)["processes"]
    assert any("not checked against its RECORD" in n for n in row["result"]["notes"]), row
    assert values(proc) == ["alpha-3", "beta-1"]


# ---------------------------------------------------------------- finding 4: the policy file

def policy_in(directory: Path, key: Ed25519PrivateKey, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / trust.POLICY_FILE
    trust.add_key(trust.public_key_line(key.public_key()), name, path=str(path))
    return path


def test_a_policy_swapped_for_a_symlink_while_it_is_read_is_never_followed(tmp_path: Path):
    # Another process flips trust.toml between the genuine file and a symlink to a policy
    # that trusts an attacker's key, as fast as it can (rename is atomic). Every load must
    # read the genuine file or refuse the symlink; none may trust the attacker.
    cfg = tmp_path / "cfg"
    genuine = policy_in(cfg, KEY, "genuine")
    evil = policy_in(tmp_path / "evil", OTHER, "attacker")
    os.symlink(evil, cfg / "link")
    os.link(genuine, cfg / "real")
    flipper = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, time
        end = time.monotonic() + 8
        while time.monotonic() < end:
            os.rename({str(cfg / 'link')!r}, {str(genuine)!r})
            os.symlink({str(evil)!r}, {str(cfg / 'link')!r})
            os.rename({str(cfg / 'real')!r}, {str(genuine)!r})
            os.link({str(genuine)!r}, {str(cfg / 'real')!r})
    """)])
    seen = {"genuine": 0, "refused": 0}
    try:
        end = time.monotonic() + 3
        while time.monotonic() < end:
            try:
                names = [k.name for k in trust.load_policy(str(genuine)).keys]
            except trust.TrustPolicyError as exc:
                assert exc.code == "SUT-E111" and "symlink" in exc.message, exc
                seen["refused"] += 1
                continue
            assert names == ["genuine"], "the policy was read through a swapped-in symlink"
            seen["genuine"] += 1
    finally:
        flipper.kill()
        flipper.wait()
    assert seen["genuine"] and seen["refused"], seen     # both states were really met


def test_a_policy_under_a_group_writable_directory_is_refused(tmp_path: Path):
    path = policy_in(tmp_path / "shared" / "cfg", KEY, "genuine")
    os.chmod(tmp_path / "shared", 0o775)
    with pytest.raises(trust.TrustPolicyError, match=r"the directory .*/shared has mode 0775, "
                       r"so other users could replace the file\. Run `chmod go-w") as err:
        trust.load_policy(str(path))
    assert err.value.code == "SUT-E111"
    assert err.value.details["directory"] == str(tmp_path / "shared")
    os.chmod(tmp_path / "shared", 0o1777)     # world-writable but not root's sticky /tmp
    if os.geteuid() != 0:
        with pytest.raises(trust.TrustPolicyError):
            trust.load_policy(str(path))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory to uid 65534")
def test_a_policy_under_a_directory_of_another_user_is_refused(tmp_path: Path):
    path = policy_in(tmp_path / "nobody" / "cfg", KEY, "genuine")
    os.chown(tmp_path / "nobody", 65534, 65534)
    with pytest.raises(trust.TrustPolicyError, match=r"the directory .*/nobody is owned by uid "
                       r"65534, not by this user \(0\) or root") as err:
        trust.load_policy(str(path))
    assert err.value.code == "SUT-E111"
    # ...and the same for the daemon's configuration, through the same check.
    (tmp_path / "nobody" / "cfg" / daemon.CONFIG_FILE).write_text("feeds = []\n")
    with pytest.raises(daemon.DaemonConfigError, match="is owned by uid 65534") as err:
        daemon.load_config(str(tmp_path / "nobody" / "cfg" / daemon.CONFIG_FILE))
    assert err.value.code == "SUT-E115"


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A fresh directory that uid 65534 may traverse (tmp_path's parents are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="suture-trust-"))
    try:
        root.chmod(0o755)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as uid 65534")
def test_another_user_cannot_swap_the_policy_in_a_sticky_directory(public_tmp: Path):
    # A root-owned sticky directory (like /tmp) is accepted: others may create entries in
    # it, but the entries we check are ours, and they cannot rename or remove them.
    sticky = public_tmp / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    path = policy_in(sticky / "cfg", KEY, "genuine")
    assert [k.name for k in trust.load_policy(str(path)).keys] == ["genuine"]
    # uid 65534 really cannot move our directory away (the kernel's sticky rule).
    moved = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534",
                            "--clear-groups", "mv", str(sticky / "cfg"), str(sticky / "x")],
                           capture_output=True, text=True, timeout=TIMEOUT)
    assert moved.returncode != 0
    # A configuration directory that uid 65534 created there first is refused.
    theirs = sticky / "theirs"
    subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                    "mkdir", "-m", "0755", str(theirs)], check=True, timeout=TIMEOUT)
    with pytest.raises(trust.TrustPolicyError, match="is owned by uid 65534"):
        trust.load_policy(str(theirs / trust.POLICY_FILE))


def test_a_fifo_in_place_of_the_policy_is_refused_without_blocking(tmp_path: Path):
    cfg = tmp_path / "cfg"
    cfg.mkdir(mode=0o700)
    os.mkfifo(cfg / trust.POLICY_FILE, 0o600)
    # In a child process, so that an open that blocks (no writer ever comes) fails the
    # test after a bounded time instead of hanging it.
    code = ("from suture.tooling import trust\n"
            "try:\n"
            f"    trust.load_policy({str(cfg / trust.POLICY_FILE)!r})\n"
            "except trust.TrustPolicyError as exc:\n"
            "    print(exc.code, exc.message)\n")
    try:
        got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=10, env=dict(os.environ, PYTHONPATH=str(SRC)))
    except subprocess.TimeoutExpired:
        pytest.fail("reading a FIFO in place of trust.toml blocked")
    assert got.stdout.startswith("SUT-E111 refusing the trust policy "), got.stdout + got.stderr
    assert got.stdout.rstrip().endswith("it is not a regular file")


def test_the_daemon_configuration_is_checked_the_same_way(tmp_path: Path):
    cfg = tmp_path / "shared" / "cfg"
    cfg.mkdir(parents=True)
    (cfg / daemon.CONFIG_FILE).write_text("feeds = []\n")
    os.chmod(tmp_path / "shared", 0o770)
    with pytest.raises(daemon.DaemonConfigError, match="has mode 0770") as err:
        daemon.load_config(str(cfg / daemon.CONFIG_FILE))
    assert err.value.code == "SUT-E115"

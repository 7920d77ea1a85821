"""Tests for suture.tooling.build.sources: real wheels, sdists and directories in tmp_path.

The only network-free pip runs are marked slow; they use --no-index and a
local --find-links directory, with the user's pip configuration switched off.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import re
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional, Sequence, Set, Tuple

import pytest

from suture.tooling.build.sources import (
    DownloadFailed,
    SourceError,
    SourceNotFound,
    SourceTree,
    UnknownSourceKind,
    UnsafeArchive,
    default_cache_dir,
    materialize,
)

DATA = Path(__file__).resolve().parents[2] / "data"
URLLIB3_OLD = DATA / "urllib3-1.26.17-py2.py3-none-any.whl"
URLLIB3_NEW = DATA / "urllib3-1.26.18-py2.py3-none-any.whl"


# ------------------------------------------------------------------ builders


def write_tree(root: Path, files: Mapping[str, str]) -> Path:
    for rel, text in files.items():
        path = root.joinpath(*rel.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def make_wheel(
    directory: Path,
    name: str,
    version: str,
    files: Mapping[str, str],
    *,
    filename: Optional[str] = None,
    metadata_name: Optional[str] = None,
) -> Path:
    """A minimal valid wheel: the files plus a dist-info with METADATA, WHEEL, RECORD."""
    dist = f"{re.sub(r'[-_.]+', '_', name)}-{version}"
    path = directory / (filename or f"{dist}-py3-none-any.whl")
    directory.mkdir(parents=True, exist_ok=True)
    info = f"{dist}.dist-info"
    members: Dict[str, str] = dict(files)
    members[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {metadata_name or name}\nVersion: {version}\n"
    )
    members[f"{info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: suture-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    members[f"{info}/RECORD"] = "".join(f"{rel},,\n" for rel in members) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, text in members.items():
            zf.writestr(rel, text)
    return path


def _tar_add(tar: tarfile.TarFile, info: tarfile.TarInfo, data: Optional[bytes] = None) -> None:
    info.mtime = 1_700_000_000
    if data is not None:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def make_sdist(
    directory: Path,
    filename: str,
    files: Mapping[str, str],
    *,
    links: Iterable[Tuple[str, str, bytes]] = (),
) -> Path:
    """A .tar.gz holding ``files``; ``links`` adds raw (name, target, type) members."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    with tarfile.open(path, "w:gz") as tar:
        for rel, text in files.items():
            _tar_add(tar, tarfile.TarInfo(rel), text.encode("utf-8"))
        for rel, target, kind in links:
            info = tarfile.TarInfo(rel)
            info.type = kind
            info.linkname = target
            _tar_add(tar, info)
    return path


def pkg_info(name: str, version: str) -> str:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"


def entries(directory: Path) -> Set[str]:
    return {p.name for p in directory.iterdir()}


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


# ----------------------------------------------------------------- directories


def test_dir_lists_importable_modules_and_package_files(tmp_path: Path, cache: Path) -> None:
    root = write_tree(tmp_path / "site", {
        "pkg/__init__.py": "",
        "pkg/sub/__init__.py": "",
        "pkg/sub/m.py": "x = 1\n",
        "pkg/__pycache__/m.cpython-311.pyc": "bytecode",
        "pkg/stale.pyc": "bytecode",
        "pkg/data.json": "{}",
        "pkg/py.typed": "",
        "pkg/_speed.cpython-311-x86_64-linux-gnu.so": "ELF",
        "pkg/templates-v2/page.html": "<p>",
        "pkg/templates-v2/helper.py": "not importable\n",
        "top.py": "",
        "top.pyi": "",
        "_native.cpython-311-x86_64-linux-gnu.so": "ELF",
        "not-ident.py": "",
        "class.py": "",
        "README.md": "",
        "foo-1.0.dist-info/METADATA": pkg_info("foo", "1.0"),
        "foo-1.0.dist-info/tool.py": "",
        "__pycache__/top.cpython-311.pyc": "",
        "data-files/x.py": "",
    })

    tree = materialize(str(root), cache_dir=cache)

    assert tree == SourceTree(root=root.resolve(), name=None, version=None,
                              kind="dir", origin=str(root))
    assert tree.modules() == {
        "pkg": root / "pkg/__init__.py",
        "pkg.sub": root / "pkg/sub/__init__.py",
        "pkg.sub.m": root / "pkg/sub/m.py",
        "top": root / "top.py",
    }
    assert tree.other_files() == {
        "_native.cpython-311-x86_64-linux-gnu.so": root / "_native.cpython-311-x86_64-linux-gnu.so",
        "pkg/_speed.cpython-311-x86_64-linux-gnu.so": root / "pkg/_speed.cpython-311-x86_64-linux-gnu.so",
        "pkg/data.json": root / "pkg/data.json",
        "pkg/py.typed": root / "pkg/py.typed",
        "pkg/templates-v2/helper.py": root / "pkg/templates-v2/helper.py",
        "pkg/templates-v2/page.html": root / "pkg/templates-v2/page.html",
        "top.pyi": root / "top.pyi",
    }
    assert not cache.exists(), "a directory is used in place, never cached"


def test_dir_package_shadows_module_of_the_same_name(tmp_path: Path, cache: Path) -> None:
    root = write_tree(tmp_path / "src", {"pkg.py": "", "pkg/__init__.py": "", "pkg/a.py": ""})

    tree = materialize(str(root), cache_dir=cache)

    assert tree.modules() == {"pkg": root / "pkg/__init__.py", "pkg.a": root / "pkg/a.py"}
    assert tree.other_files() == {"pkg.py": root / "pkg.py"}


def test_dir_refuses_a_package_passed_instead_of_its_parent(tmp_path: Path, cache: Path) -> None:
    pkg = write_tree(tmp_path / "src", {"shop/__init__.py": ""}) / "shop"

    with pytest.raises(UnknownSourceKind, match=(
        rf"^Cannot build from '{re.escape(str(pkg))}': {re.escape(str(pkg.resolve()))} "
        r"holds __init__\.py, so it is a package, not a source root\. Pass the directory "
        rf"that contains it: {re.escape(str(pkg.resolve().parent))} \[SUT-E502\]$"
    )):
        materialize(str(pkg), cache_dir=cache)


# ---------------------------------------------------------------------- wheels


def test_wheel_is_extracted_into_cache_keyed_by_sha256(tmp_path: Path, cache: Path) -> None:
    import hashlib

    wheel = make_wheel(tmp_path / "dist", "Demo-Pkg", "2.0", {
        "demo_pkg/__init__.py": "VERSION = 2\n",
        "demo_pkg/core.py": "def f():\n    return 2\n",
        "demo_pkg/schema.json": "{}",
    })
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()

    tree = materialize(str(wheel), cache_dir=cache)

    assert tree.root == cache / "sources-v1" / "wheel" / digest / "root"
    assert (tree.name, tree.version, tree.kind, tree.origin, tree.sha256) == (
        "Demo-Pkg", "2.0", "wheel", str(wheel), digest)
    assert sorted(tree.modules()) == ["demo_pkg", "demo_pkg.core"]
    assert tree.modules()["demo_pkg.core"].read_text() == "def f():\n    return 2\n"
    assert list(tree.other_files()) == ["demo_pkg/schema.json"]
    assert list((cache / "sources-v1" / "tmp").iterdir()) == []


def test_wheel_name_comes_from_filename_when_metadata_is_missing(tmp_path: Path, cache: Path) -> None:
    wheel = tmp_path / "Some_Thing-3.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("some_thing.py", "")

    tree = materialize(str(wheel), cache_dir=cache)

    assert (tree.name, tree.version) == ("some-thing", "3.1")
    assert list(tree.modules()) == ["some_thing"]


def test_wheel_purelib_data_is_installed_at_the_top(tmp_path: Path, cache: Path) -> None:
    wheel = make_wheel(tmp_path, "odd", "1.0", {
        "odd/__init__.py": "",
        "odd-1.0.data/purelib/odd_extra.py": "",
        "odd-1.0.data/platlib/odd_native/__init__.py": "",
        "odd-1.0.data/scripts/odd-cli": "#!/bin/sh\n",
        "odd-1.0.data/data/share/odd.txt": "",
    })

    tree = materialize(str(wheel), cache_dir=cache)

    assert sorted(tree.modules()) == ["odd", "odd_extra", "odd_native"]
    assert entries(tree.root) == {"odd", "odd_extra.py", "odd_native", "odd-1.0.dist-info"}


def test_wheel_with_parent_reference_member_is_refused(tmp_path: Path, cache: Path) -> None:
    wheel = make_wheel(tmp_path, "evil", "1.0", {"evil/__init__.py": "", "../evil_escape.py": ""})

    with pytest.raises(UnsafeArchive, match=(
        rf"^Refused to unpack {re.escape(str(wheel))}: 1 unsafe member: "
        r"'\.\./evil_escape\.py' has a '\.\.' component\. Nothing was extracted\."
    )):
        materialize(str(wheel), cache_dir=cache)
    assert not (tmp_path / "evil_escape.py").exists()
    assert not (cache / "sources-v1" / "wheel").exists()


# ---------------------------------------------------------------------- sdists


def test_sdist_with_src_layout_uses_src(tmp_path: Path, cache: Path) -> None:
    sdist = make_sdist(tmp_path, "my_pkg-1.2.tar.gz", {
        "my_pkg-1.2/PKG-INFO": pkg_info("My_Pkg", "1.2"),
        "my_pkg-1.2/setup.py": "raise SystemExit('never run')\n",
        "my_pkg-1.2/pyproject.toml": "",
        "my_pkg-1.2/tests/test_core.py": "",
        "my_pkg-1.2/src/my_pkg/__init__.py": "",
        "my_pkg-1.2/src/my_pkg/core.py": "",
        "my_pkg-1.2/src/my_pkg/tools/__init__.py": "",
        "my_pkg-1.2/src/my_pkg/templates/base.txt": "",
        "my_pkg-1.2/src/my_pkg.egg-info/PKG-INFO": pkg_info("My_Pkg", "1.2"),
    })

    tree = materialize(str(sdist), cache_dir=cache)

    assert (tree.name, tree.version, tree.kind) == ("My_Pkg", "1.2", "sdist")
    assert entries(tree.root) == {"my_pkg"}
    assert sorted(tree.modules()) == ["my_pkg", "my_pkg.core", "my_pkg.tools"]
    assert list(tree.other_files()) == ["my_pkg/templates/base.txt"]
    info = json.loads((tree.root.parent / "info.json").read_text())
    assert (info["layout"], info["kept"], info["dropped"]) == (
        "src", ["my_pkg"], ["my_pkg.egg-info"])


def test_sdist_with_flat_layout_drops_setup_tests_and_docs(tmp_path: Path, cache: Path) -> None:
    sdist = make_sdist(tmp_path, "flatpkg-0.3.tar.gz", {
        "flatpkg-0.3/PKG-INFO": pkg_info("flatpkg", "0.3"),
        "flatpkg-0.3/setup.py": "",
        "flatpkg-0.3/conftest.py": "",
        "flatpkg-0.3/noxfile.py": "",
        "flatpkg-0.3/README.md": "",
        "flatpkg-0.3/tests/test_a.py": "",
        "flatpkg-0.3/docs/conf.py": "",
        "flatpkg-0.3/examples/demo.py": "",
        "flatpkg-0.3/assets/logo.svg": "",
        "flatpkg-0.3/flatpkg/__init__.py": "",
        "flatpkg-0.3/flatpkg/data/table.json": "[]",
        "flatpkg-0.3/flat_helper.py": "",
    })

    tree = materialize(str(sdist), cache_dir=cache)

    assert (tree.name, tree.version) == ("flatpkg", "0.3")
    assert entries(tree.root) == {"flatpkg", "flat_helper.py"}
    assert sorted(tree.modules()) == ["flat_helper", "flatpkg"]
    assert list(tree.other_files()) == ["flatpkg/data/table.json"]


def test_sdist_with_lib_and_lib3_uses_the_copy_that_parses(tmp_path: Path, cache: Path) -> None:
    # PyYAML 5.3.1's layout: setup.py picks lib/ on Python 2 and lib3/ on Python 3
    sdist = make_sdist(tmp_path, "PyYAML-5.3.1.tar.gz", {
        "PyYAML-5.3.1/PKG-INFO": pkg_info("PyYAML", "5.3.1"),
        "PyYAML-5.3.1/setup.py": "",
        "PyYAML-5.3.1/ext/_yaml.pyx": "",
        "PyYAML-5.3.1/lib/yaml/__init__.py": "print 'python 2'\n",
        "PyYAML-5.3.1/lib3/yaml/__init__.py": "print('python 3')\n",
        "PyYAML-5.3.1/lib3/yaml/constructor.py": "",
    })

    tree = materialize(str(sdist), cache_dir=cache)

    assert sorted(tree.modules()) == ["yaml", "yaml.constructor"]
    assert "python 3" in tree.modules()["yaml"].read_text()


def test_sdist_with_its_own_package_keeps_it_beside_a_lib_folder(tmp_path: Path,
                                                                 cache: Path) -> None:
    sdist = make_sdist(tmp_path, "tool-1.0.tar.gz", {
        "tool-1.0/PKG-INFO": pkg_info("tool", "1.0"),
        "tool-1.0/tool/__init__.py": "",
        "tool-1.0/lib/helper.py": "",
    })

    assert sorted(materialize(str(sdist), cache_dir=cache).modules()) == ["lib.helper", "tool"]


def test_release_without_wheel_or_sdist_for_this_python_takes_another_pythons_wheel(
        tmp_path: Path, cache: Path) -> None:
    # PyYAML 5.4: cp36-cp39 wheels only, and an sdist pip cannot prepare any more
    links = tmp_path / "links"
    other = "3.9" if sys.version_info[:2] != (3, 9) else "3.10"
    tag = f"cp{other.replace('.', '')}"
    make_wheel(links, "suture-fixture-old", "5.4", {"suture_fixture_old/__init__.py": "X = 1\n"},
               filename=f"suture_fixture_old-5.4-{tag}-{tag}-manylinux1_x86_64.whl")

    tree = materialize("suture-fixture-old==5.4", cache_dir=cache, find_links=[str(links)],
                       no_index=True)

    assert sorted(tree.modules()) == ["suture_fixture_old"]
    assert (tree.name, tree.version) == ("suture-fixture-old", "5.4")


def test_sdist_src_without_python_falls_back_to_flat_layout(tmp_path: Path, cache: Path) -> None:
    sdist = make_sdist(tmp_path, "fast-1.0.tar.gz", {
        "fast-1.0/src/_speedups.c": "",
        "fast-1.0/fast/__init__.py": "",
    })

    tree = materialize(str(sdist), cache_dir=cache)

    assert entries(tree.root) == {"fast"}
    assert (tree.name, tree.version) == ("fast", "1.0")  # from the file name: no PKG-INFO


def test_zip_sdist_without_top_folder(tmp_path: Path, cache: Path) -> None:
    sdist = tmp_path / "zpkg-4.0.zip"
    with zipfile.ZipFile(sdist, "w") as zf:
        zf.writestr("PKG-INFO", pkg_info("zpkg", "4.0"))
        zf.writestr("setup.py", "")
        zf.writestr("zpkg/__init__.py", "")
        zf.writestr("zpkg/mod.py", "")

    tree = materialize(str(sdist), cache_dir=cache)

    assert (tree.name, tree.version, tree.kind) == ("zpkg", "4.0", "sdist")
    assert sorted(tree.modules()) == ["zpkg", "zpkg.mod"]


def test_sdist_links_inside_the_archive_become_copies(tmp_path: Path, cache: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    sdist = make_sdist(tmp_path, "lnk-1.0.tar.gz", {
        "lnk-1.0/lnk/__init__.py": "",
        "lnk-1.0/lnk/real.py": "VALUE = 1\n",
        "lnk-1.0/lnk/sub/x.py": "",
    }, links=[
        ("lnk-1.0/lnk/alias.py", "real.py", tarfile.SYMTYPE),
        ("lnk-1.0/lnk/hard.py", "lnk-1.0/lnk/real.py", tarfile.LNKTYPE),
        ("lnk-1.0/lnk/chain.py", "alias.py", tarfile.SYMTYPE),
        ("lnk-1.0/lnk/subdir", "sub", tarfile.SYMTYPE),
    ])

    with caplog.at_level(logging.WARNING, logger="suture.tooling.build.sources"):
        tree = materialize(str(sdist), cache_dir=cache)

    for name in ("alias", "hard", "chain"):
        path = tree.root / "lnk" / f"{name}.py"
        assert not path.is_symlink() and path.read_text() == "VALUE = 1\n"
    assert not (tree.root / "lnk" / "subdir").exists()
    info = json.loads((tree.root.parent / "info.json").read_text())
    assert info["skipped_links"] == ["lnk-1.0/lnk/subdir"]
    assert "skipped link 'lnk-1.0/lnk/subdir' -> 'sub'" in caplog.text


@pytest.mark.parametrize(("member", "problem"), [
    (("/abs/evil.py", None, None), "'/abs/evil.py' is an absolute path"),
    (("bad-1.0/../../evil.py", None, None), "'bad-1.0/../../evil.py' has a '..' component"),
    (("bad-1.0\\evil.py", None, None), "'bad-1.0\\\\evil.py' has a backslash in its name"),
    (("bad-1.0/bad/l.py", "../../../etc/passwd", tarfile.SYMTYPE),
     "'bad-1.0/bad/l.py' is a link to '../../../etc/passwd', outside the archive"),
    (("bad-1.0/bad/l.py", "/etc/passwd", tarfile.SYMTYPE),
     "'bad-1.0/bad/l.py' is a link to the absolute path '/etc/passwd'"),
    (("bad-1.0/bad/h.py", "../outside.py", tarfile.LNKTYPE),
     "'bad-1.0/bad/h.py' is a link to '../outside.py', outside the archive"),
    (("bad-1.0/bad/dev", "", tarfile.CHRTYPE), "'bad-1.0/bad/dev' is a device file or FIFO"),
], ids=["absolute", "dotdot", "backslash", "symlink-escapes", "symlink-absolute",
        "hardlink-escapes", "device"])
def test_unsafe_tar_member_is_refused(tmp_path: Path, cache: Path,
                                      member: Tuple[str, Optional[str], Optional[bytes]],
                                      problem: str) -> None:
    name, target, kind = member
    files = {"bad-1.0/bad/__init__.py": ""}
    links: Sequence[Tuple[str, str, bytes]] = []
    if kind is None:
        files[name] = "boom"
    else:
        assert target is not None
        links = [(name, target, kind)]
    sdist = make_sdist(tmp_path / "in", "bad-1.0.tar.gz", files, links=links)

    with pytest.raises(UnsafeArchive) as raised:
        materialize(str(sdist), cache_dir=cache)

    assert str(raised.value) == (
        f"Refused to unpack {sdist}: 1 unsafe member: {problem}. "
        "Nothing was extracted. Get the archive from a trusted source, or unpack and "
        "check it yourself and pass the directory. [SUT-E503]"
    )
    assert not (cache / "sources-v1" / "sdist-2").exists()
    assert list((cache / "sources-v1" / "tmp").iterdir()) == []


def test_unsafe_archive_reports_every_unsafe_member(tmp_path: Path, cache: Path) -> None:
    sdist = make_sdist(tmp_path, "bad-1.0.tar.gz", {
        "/abs.py": "", "bad-1.0/../x.py": "", "bad-1.0/bad/__init__.py": "",
    }, links=[("bad-1.0/l", "../../y", tarfile.SYMTYPE)])

    with pytest.raises(UnsafeArchive, match=r": 3 unsafe members: '/abs\.py' is an absolute"
                       r" path; 'bad-1\.0/\.\./x\.py' has a '\.\.' component; 'bad-1\.0/l' is a"
                       r" link to '\.\./\.\./y', outside the archive\. Nothing") as raised:
        materialize(str(sdist), cache_dir=cache)
    assert [m for m, _ in raised.value.details["members"]] == [
        "/abs.py", "bad-1.0/../x.py", "bad-1.0/l"]


def test_sdist_without_importable_code_is_refused(tmp_path: Path, cache: Path) -> None:
    sdist = make_sdist(tmp_path, "empty-1.0.tar.gz", {
        "empty-1.0/setup.py": "", "empty-1.0/tests/test_x.py": "", "empty-1.0/README": "",
    })

    with pytest.raises(SourceError, match=(
        rf"^Found no importable modules in the sdist {re.escape(str(sdist))}: looked in its "
        r"top folder and dropped README, setup\.py, tests\. Unpack it and pass the directory "
        r"that holds the packages\. \[SUT-E500\]$"
    )):
        materialize(str(sdist), cache_dir=cache)


def test_corrupt_archive_is_reported(tmp_path: Path, cache: Path) -> None:
    sdist = tmp_path / "broken-1.0.tar.gz"
    sdist.write_bytes(b"not a tarball")

    with pytest.raises(SourceError, match=rf"^Cannot read {re.escape(str(sdist))} as a sdist: "):
        materialize(str(sdist), cache_dir=cache)


# ------------------------------------------------------------------------ cache


def test_second_materialize_reuses_the_extracted_wheel(tmp_path: Path, cache: Path) -> None:
    wheel = make_wheel(tmp_path, "reuse", "1.0", {"reuse/__init__.py": "A = 1\n"})
    first = materialize(str(wheel), cache_dir=cache)
    module = first.modules()["reuse"]
    stamp = module.stat().st_mtime_ns
    sentinel = first.root.parent / "sentinel"
    sentinel.write_text("still here")
    copy = tmp_path / "elsewhere" / wheel.name
    copy.parent.mkdir()
    copy.write_bytes(wheel.read_bytes())

    second = materialize(str(wheel), cache_dir=cache)
    same_bytes = materialize(str(copy), cache_dir=cache)

    assert second == first
    assert same_bytes.root == first.root and same_bytes.origin == str(copy)
    assert sentinel.read_text() == "still here"
    assert module.stat().st_mtime_ns == stamp


def test_damaged_cache_entry_is_reported_with_a_fix(tmp_path: Path, cache: Path) -> None:
    wheel = make_wheel(tmp_path, "dmg", "1.0", {"dmg.py": ""})
    entry = materialize(str(wheel), cache_dir=cache).root.parent
    (entry / "info.json").unlink()

    with pytest.raises(SourceError, match=(
        rf"^Cache entry {re.escape(str(entry))} is damaged \(cannot read info\.json: .*\)\. "
        rf"Nothing was built from it\. Delete it and retry: rm -rf {re.escape(str(entry))} "
        r"\[SUT-E500\]$"
    )):
        materialize(str(wheel), cache_dir=cache)


def test_default_cache_dir_prefers_suture_then_xdg_then_home(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SUTURE_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("SUTURE_CACHE_DIR")
    assert default_cache_dir() == tmp_path / "xdg" / "suture"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "suture"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "suture"


# ----------------------------------------------------------------- bad inputs


def test_missing_path_is_not_found(tmp_path: Path, cache: Path) -> None:
    missing = tmp_path / "nope-1.0.whl"
    with pytest.raises(SourceNotFound, match=(
        rf"^Cannot build from '{re.escape(str(missing))}': {re.escape(str(missing))} "
        r"does not exist\. \[SUT-E501\]$"
    )):
        materialize(str(missing), cache_dir=cache)


def test_bare_name_suggests_pinning(tmp_path: Path, cache: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SourceNotFound, match=(
        rf"^Cannot build from 'urllib3': {re.escape(str(tmp_path / 'urllib3'))} does not "
        r"exist\. To download a release instead, pin it: 'urllib3==<version>'\. \[SUT-E501\]$"
    )):
        materialize("urllib3", cache_dir=cache)


@pytest.mark.parametrize("spec", ["urllib3>=1.26", "urllib3==1.26.*", "urllib3[socks]==1.26.18",
                                  "urllib3 ~= 1.26"])
def test_unpinned_spec_is_refused(spec: str, cache: Path) -> None:
    with pytest.raises(UnknownSourceKind, match=(
        rf"^Cannot build from '{re.escape(spec)}': a distribution spec must pin one exact "
        r"version, like 'urllib3==1\.26\.18' \(no ranges, wildcards, extras or markers\)\. "
        r"\[SUT-E502\]$"
    )):
        materialize(spec, cache_dir=cache)


def test_other_file_is_an_unknown_kind(tmp_path: Path, cache: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("")
    with pytest.raises(UnknownSourceKind, match=(
        rf"^Cannot build from '{re.escape(str(notes))}': {re.escape(str(notes))} is a file "
        r"but not a wheel \(\.whl\) or an sdist \(\.tar\.gz, \.tgz, \.tar\.bz2, \.tar\.xz, "
        r"\.tar, \.zip\)\. Pass a source directory, a wheel, an sdist or 'name==version'\. "
        r"\[SUT-E502\]$"
    )):
        materialize(str(notes), cache_dir=cache)


@pytest.mark.parametrize("spec", ["", "  "])
def test_empty_spec_is_refused_rather_than_read_as_the_current_directory(
        spec: str, cache: Path) -> None:
    with pytest.raises(UnknownSourceKind, match=(
        r"^Cannot build from '': pass a source directory, a wheel, an sdist or "
        r"'name==version'\. \[SUT-E502\]$"
    )):
        materialize(spec, cache_dir=cache)


def test_unusable_cache_dir_is_reported(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "nocache", "1.0", {"nocache.py": ""})
    not_a_dir = tmp_path / "cache-is-a-file"
    not_a_dir.write_text("")

    with pytest.raises(SourceError, match=(
        rf"^Cannot write to the cache at {re.escape(str(not_a_dir))}: .*\. Nothing was built\. "
        r"Pass another directory \(cache_dir=, or set SUTURE_CACHE_DIR\) or fix its "
        r"permissions\. \[SUT-E500\]$"
    )):
        materialize(str(wheel), cache_dir=not_a_dir)


def test_source_errors_survive_pickling(tmp_path: Path) -> None:
    error = UnsafeArchive("Refused", details={"path": "/x", "members": [["a", "b"]]})

    clone = pickle.loads(pickle.dumps(error))

    assert type(clone) is UnsafeArchive
    assert (str(clone), clone.details, clone.code) == (
        "Refused [SUT-E503]", {"path": "/x", "members": [["a", "b"]]}, "SUT-E503")


# -------------------------------------------------------------- real pip runs


@pytest.fixture
def isolated_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make pip see only what a test passes: no pip.conf, no PIP_* settings."""
    for key in list(os.environ):
        if key.startswith("PIP_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)


@pytest.mark.slow
@pytest.mark.usefixtures("isolated_pip")
def test_spec_is_downloaded_with_find_links_then_served_from_cache(
        tmp_path: Path, cache: Path) -> None:
    links = tmp_path / "links"
    wheel = make_wheel(links, "suture-fixture-pkg", "1.0",
                       {"suture_fixture_pkg/__init__.py": "ANSWER = 42\n"})

    tree = materialize("suture-fixture-pkg==1.0", cache_dir=cache,
                       find_links=[str(links)], no_index=True)

    assert (tree.name, tree.version, tree.kind, tree.origin) == (
        "suture-fixture-pkg", "1.0", "spec", "suture-fixture-pkg==1.0")
    assert list(tree.modules()) == ["suture_fixture_pkg"]
    downloads = list((cache / "sources-v1" / "download").iterdir())
    assert [[f.name for f in d.iterdir()] for d in downloads] == [[wheel.name]]

    wheel.unlink()  # pip could not find it any more: a second call must not run pip
    again = materialize("suture-fixture-pkg==1.0", cache_dir=cache,
                        find_links=[str(links)], no_index=True)
    assert again == tree


_IN_TREE_BACKEND = textwrap.dedent("""\
    import os

    NAME, VERSION = "suture-fixture-sdist", "1.0"
    DIST_INFO = "suture_fixture_sdist-1.0.dist-info"

    def get_requires_for_build_wheel(config_settings=None):
        return []

    def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
        os.makedirs(os.path.join(metadata_directory, DIST_INFO))
        with open(os.path.join(metadata_directory, DIST_INFO, "METADATA"), "w") as f:
            f.write("Metadata-Version: 2.1\\nName: %s\\nVersion: %s\\n" % (NAME, VERSION))
        return DIST_INFO

    def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
        raise NotImplementedError("pip download only needs metadata")
""")


@pytest.mark.slow
@pytest.mark.usefixtures("isolated_pip")
def test_spec_without_a_wheel_falls_back_to_the_sdist(tmp_path: Path, cache: Path) -> None:
    links = tmp_path / "links"
    make_sdist(links, "suture_fixture_sdist-1.0.tar.gz", {
        "suture_fixture_sdist-1.0/PKG-INFO": pkg_info("suture-fixture-sdist", "1.0"),
        "suture_fixture_sdist-1.0/pyproject.toml": (
            '[build-system]\nrequires = []\nbuild-backend = "backend"\n'
            'backend-path = ["in-tree-backend"]\n'
        ),
        "suture_fixture_sdist-1.0/in-tree-backend/backend.py": _IN_TREE_BACKEND,
        "suture_fixture_sdist-1.0/suture_fixture_sdist/__init__.py": "",
    })

    tree = materialize("suture-fixture-sdist==1.0", cache_dir=cache,
                       find_links=[str(links)], no_index=True)

    assert (tree.name, tree.version, tree.kind) == ("suture-fixture-sdist", "1.0", "spec")
    assert entries(tree.root) == {"suture_fixture_sdist"}


@pytest.mark.slow
@pytest.mark.usefixtures("isolated_pip")
def test_spec_that_pip_cannot_find_reports_pip_stderr(tmp_path: Path, cache: Path) -> None:
    links = tmp_path / "links"
    make_wheel(links, "suture-fixture-pkg", "1.0", {"suture_fixture_pkg/__init__.py": ""})

    with pytest.raises(DownloadFailed, match=(
        r"^pip could not download suture-fixture-pkg==2\.0 \(tried a wheel, an sdist, then "
        r"the wheels of other Python versions\); "
        r"exit status 1\. Last lines of pip's stderr:\n(.*\n)*.*No matching distribution "
        r"found for suture-fixture-pkg==2\.0\n"
        r"Nothing was cached\. Retry by hand to see everything: .* -m pip download "
        r"--no-deps .* suture-fixture-pkg==2\.0 \[SUT-E504\]$"
    )):
        materialize("suture-fixture-pkg==2.0", cache_dir=cache,
                    find_links=[str(links)], no_index=True)
    assert not (cache / "sources-v1" / "download").exists()


# ------------------------------------------------------- real releases: urllib3


def test_urllib3_cve_2023_45803_release_changes_exactly_these_modules(cache: Path) -> None:
    old = materialize(str(URLLIB3_OLD), cache_dir=cache)
    new = materialize(str(URLLIB3_NEW), cache_dir=cache)

    assert (old.name, old.version, new.name, new.version) == (
        "urllib3", "1.26.17", "urllib3", "1.26.18")
    old_modules, new_modules = old.modules(), new.modules()
    assert set(old_modules) == set(new_modules)
    assert len(old_modules) == 39
    changed = {
        name for name in old_modules
        if old_modules[name].read_bytes() != new_modules[name].read_bytes()
    }
    assert changed == {
        "urllib3._collections",             # + HTTPHeaderDict._prepare_for_method_change
        "urllib3._version",                 # __version__
        "urllib3.connectionpool",           # HTTPConnectionPool.urlopen + import
        "urllib3.contrib.securetransport",  # module-level `six` import only
        "urllib3.poolmanager",              # PoolManager.urlopen + import
    }
    assert old.other_files().keys() == new.other_files().keys()

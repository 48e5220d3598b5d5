"""The install paths the README gives work today: a built wheel, and a light `make demo`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import sipgate_ai_flow

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # What `make wheel` runs, into a temporary folder instead of dist/.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        timeout=300,
    )
    (built,) = out.glob("sipgate_ai_flow-*.whl")
    return built


def test_the_wheel_carries_the_package_and_its_type_marker(wheel: Path) -> None:
    assert wheel.name.startswith(f"sipgate_ai_flow-{sipgate_ai_flow.__version__}-")
    names = zipfile.ZipFile(wheel).namelist()
    assert "sipgate_ai_flow/py.typed" in names
    assert "sipgate_ai_flow/testing/pytest_plugin.py" in names
    assert not [n for n in names if n.startswith("tests/")]


def test_the_installed_wheel_runs_aiflow(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        timeout=300,
    )
    # The dependencies come from this environment; the package itself only from the wheel.
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = "import sipgate_ai_flow, sipgate_ai_flow.cli as c; print(sipgate_ai_flow.__file__); c.main()"
    done = subprocess.run(
        [sys.executable, "-c", code, "--version"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()[:2]
    assert first.startswith(str(target))
    assert sipgate_ai_flow.__version__ in second


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_installs_only_the_package() -> None:
    # -n prints what would run, -B as on a fresh clone: no development tools before the first call.
    plan = subprocess.run(
        ["make", "-n", "-B", "demo"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "pip install -q -e ." in plan
    assert "[dev]" not in plan
    assert "examples/demo_call.py" in plan
    plan = subprocess.run(
        ["make", "-n", "-B", "install"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "'.[dev]'" in plan


def test_the_readme_install_commands_name_real_make_targets() -> None:
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    for target in ("package", "wheel"):
        assert f"make {target}" in readme
        assert f"\n{target}:" in makefile
    assert "pip install sipgate-ai-flow  " not in readme  # not on the index yet: no bare command

"""`egom2p curate` from an installed package, outside any checkout: the flows ship inside the wheel
(egom2p/flows/), nothing is imported from the repository root.

The wheel is built from a copy of the package sources and installed with ``--no-deps`` into a target
folder (the dependencies come from the test's environment), then the installed console script runs
from another working directory with only that folder on PYTHONPATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from egom2p.clips import existing_ids

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_installed_wheel_curates_from_outside_the_checkout(tmp_path, prefect_harness, ray_session):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "egom2p", src / "egom2p", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
                   check=True, capture_output=True, timeout=600)
    (wheel,) = (tmp_path / "dist").glob("egom2p-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"egom2p/flows/curate.py", "egom2p/flows/tokenize.py", "egom2p/flows/deployments.py",
            "egom2p/conf/config.yaml"} <= set(names)
    assert not any(n.startswith("flows/") for n in names)  # the checkout's re-exports are not the package
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, capture_output=True,
                   timeout=600)

    work = tmp_path / "elsewhere"  # neither the checkout nor the source copy
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site), RAY_ADDRESS=ray_session.get_runtime_context().gcs_address,
               PREFECT_API_URL=prefect_harness)
    where = subprocess.run([sys.executable, "-c", "import egom2p.flows.curate as m, sys; print(m.__file__); "
                            f"print({str(ROOT)!r} in sys.path)"], cwd=work, env=env, capture_output=True, text=True,
                           check=True).stdout.split()
    assert where == [str(site / "egom2p" / "flows" / "curate.py"), "False"]
    egom2p = [sys.executable, str(site / "bin" / "egom2p")]
    subprocess.run([*egom2p, "render", "egogen", "--out", "raw", "--sequences", "1", "--seconds", "2", "--size", "32"],
                   cwd=work, env=env, check=True, capture_output=True, timeout=600)
    p = subprocess.run([*egom2p, "curate", "egogen", "--raw", "raw", "--out", "clips", "--size", "32"], cwd=work,
                       env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, "\n".join(line for line in p.stderr.splitlines() if "INFO" not in line)[-3000:]
    assert existing_ids(work / "clips" / "egogen.lance") == {"egogen/s0_0000/000000"}

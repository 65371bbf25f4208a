"""Connecting to Ray: a stale bootstrap file (a `ray start` head killed without `ray stop`) is named with the fix,
at once, instead of Ray retrying for minutes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.conftest import free_port

CONNECT = (
    "from cupola import Settings; from cupola.runtime import ensure_ray; ensure_ray(Settings.load(data_root='lake'))"
)


def test_a_bootstrap_file_naming_a_dead_cluster_is_reported_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{free_port()}")  # what a killed head leaves
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CUPOLA_", "RAY_ADDRESS"))},
        "RAY_TMPDIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-c", CONNECT], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "nothing answers there: run `ray stop` to clear it, or set CUPOLA_RAY_ADDRESS=local" in result.stderr


def test_an_explicit_address_skips_the_bootstrap_file_and_token_auth_is_on_without_a_notice() -> None:
    """CUPOLA_RAY_ADDRESS=local starts a new Ray whatever the bootstrap file says; Ray turns token authentication on
    for it (no RAY_AUTH_MODE set, no token yet) and its notice saying so, which no user acts on, is not printed."""
    tmp_path = Path(tempfile.mkdtemp(prefix="cupola-rt-"))  # short: Ray's socket paths must fit 107 bytes
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{free_port()}")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CUPOLA_", "RAY_ADDRESS", "RAY_AUTH_MODE"))},
        "RAY_TMPDIR": str(tmp_path),
        "HOME": str(tmp_path),  # no ~/.ray/auth_token yet
        "CUPOLA_RAY_ADDRESS": "local",
    }
    script = (
        CONNECT
        + "; import os, ray; print(os.environ.get('RAY_AUTH_MODE'), int(ray.cluster_resources()['CPU'])); ray.shutdown()"
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-2000:]
    mode, cpus = result.stdout.strip().splitlines()[-1].split()
    assert mode == "token" and int(cpus) >= 1
    assert "Token authentication is enabled" not in result.stderr, result.stderr[-2000:]

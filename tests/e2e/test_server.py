"""`shortlist serve` as a real uvicorn process."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT
from tests.e2e.serve import free_port


def test_serve_answers_recommendations(built_catalog: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from pipelines.cli import main; main()",
            "serve",
            "--db",
            str(built_catalog),
            "--port",
            str(port),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            time.sleep(0.3)
        query = (
            '{ recommendations(userId: "u00001", count: 30) '
            "{ degraded items { item { id } explain { summary } } } }"
        )
        response = httpx.post(f"{url}/graphql", json={"query": query}, timeout=30)
        assert response.status_code == 200
        items = response.json()["data"]["recommendations"]["items"]
        assert len(items) == 30 and all(i["explain"]["summary"] for i in items)
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def test_serve_without_catalog_is_one_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from pipelines.cli import main; main()",
            "serve",
            "--db",
            str(tmp_path / "none"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "no catalog" in result.stderr and "Traceback" not in result.stderr

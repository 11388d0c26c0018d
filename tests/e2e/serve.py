"""A real `shortlist serve` process for end-to-end tests: start, wait until ready, ask, stop."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from app.store import MANIFEST, CatalogRoot
from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """`shortlist serve --db root [args]` on a free port, with `env` on top of this process's;
    its stderr (the server's log) is appended to `log`."""

    def __init__(
        self, root: Path, env: dict[str, str], log: Path, args: tuple[str, ...] = ()
    ) -> None:
        self.root, self.log = root, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = ["-c", "from pipelines.cli import main; main()", "serve", "--db", str(root)]
        command += list(args)
        with log.open("a") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, *command, "--port", str(self.port)],
                cwd=ROOT,
                env={**os.environ, **env},
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

    def ready(self) -> dict[str, Any]:
        """The /readyz answer once it is 200; fails if the process exits or two minutes pass."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                response = httpx.get(f"{self.url}/readyz", timeout=2)
                if response.status_code == 200:
                    return response.json()  # type: ignore[no-any-return]
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the server on port {self.port} did not become ready")

    def ask(self, query: str, key: str | None, timeout: float, **variables: Any) -> dict[str, Any]:
        """The GraphQL response body (HTTP 200 asserted)."""
        response = httpx.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": variables},
            headers={"x-api-key": key} if key else {},
            timeout=timeout,
        )
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def publish_copy(root: Path, version: str) -> str:
    """A new version `version` in `root`, copied from CURRENT (standing in for a build), made
    CURRENT; returns the version copied."""
    catalog = CatalogRoot(root)
    first = catalog.current()
    assert first is not None
    shutil.copytree(catalog.versions_dir / first, catalog.versions_dir / version)
    manifest = json.loads((catalog.versions_dir / version / MANIFEST).read_text())
    (catalog.versions_dir / version / MANIFEST).write_text(
        json.dumps({**manifest, "version": version})
    )
    catalog.publish(version)
    return first

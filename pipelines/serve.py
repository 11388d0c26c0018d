"""`shortlist serve`: the server composed (the app and the GraphQL schema), in one process or in
several worker processes on one listening socket.

Worker processes are replicas of one another on one host (README "Scaling out"): each loads the
catalog version and keeps its own live state, and they share, through Redis
(SHORTLIST_REDIS_URL, required for more than one worker), the event feed and sequence numbers,
the pinned version, the upserted items' notices and lock, the similar-items cache and the
per-client budgets. The workers take the shared socket's connections in turn, the one with the
fewest open connections first (`pipelines.connections`), so that clients keeping a few
connections open are answered on every core. Their metrics are written to a directory the
supervisor makes (prometheus-client's multi-process mode), so /metrics sums them all.

The parent process only supervises (uvicorn's `Multiprocess`): it restarts a worker that dies
and stops everything, exiting non-zero, when a worker cannot start. Differences from uvicorn's:
the workers take connections in turn (above); SIGHUP is passed on to every worker, which loads
the newest built version in the background and pins it for the others (what SIGHUP does to one
process), where uvicorn would restart the workers - and a restarted worker starts on the pinned,
old version; and the number of workers is fixed (SIGTTIN and SIGTTOU are ignored).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette
from uvicorn.config import STARTUP_FAILURE as FAILED_TO_START
from uvicorn.supervisors import Multiprocess

from app.errors import ConfigError
from app.metrics import SHARED_DIR
from app.server import create_app
from app.settings import Settings
from pipelines.connections import Loads, TakingProcess
from schema.http import graphql_app

WORKER_PING_TIMEOUT_S = 60
PR_SET_PDEATHSIG = 1  # linux/prctl.h
log = logging.getLogger("uvicorn.error")  # the supervisor logs where uvicorn does


def composed(settings: Settings) -> Starlette:
    """The served application."""
    return create_app(settings, graphql_app(settings.graphiql))


def worker() -> Starlette:
    """The application in a worker process (uvicorn's factory): the settings come from the
    environment, and the worker ends with its supervisor (Linux), so that a supervisor killed
    outright (SIGKILL, the OOM killer) leaves no worker serving on, orphaned."""
    _end_with_parent()
    return composed(Settings())


def _end_with_parent() -> None:
    supervisor = os.getppid()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux
        return
    if os.getppid() != supervisor:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def serve(settings: Settings, workers: int = 1) -> None:
    """Serve until stopped. More than one worker needs Redis (ConfigError otherwise); the
    workers read their settings from the environment, which must hold `settings`' overrides."""
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if workers > 1 and settings.redis_url is None:
        raise ConfigError(
            f"--workers {workers} needs SHORTLIST_REDIS_URL: worker processes are replicas, "
            "which share events, items, the pinned version and rate limits through Redis"
        )
    # the GraphQL endpoint logs one line per request itself: uvicorn's access log would repeat it
    options = {
        "host": settings.host,
        "port": settings.port,
        "log_level": "warning",
        "access_log": False,
        "lifespan": "on",
    }
    if workers == 1:
        uvicorn.run(composed(settings), **options)  # type: ignore[arg-type]
        return
    config = uvicorn.Config(
        "pipelines.serve:worker",
        factory=True,
        workers=workers,
        # a worker answers the supervisor's pings from a thread, which long native calls while
        # it loads a large catalog can keep off the GIL for seconds: unanswered, it is killed
        timeout_worker_healthcheck=WORKER_PING_TIMEOUT_S,
        **options,  # type: ignore[arg-type]
    )
    with shared_metrics():
        supervisor = Workers(config, sockets=[config.bind_socket()])
        supervisor.run()
    if supervisor.failed_to_start():
        sys.exit(FAILED_TO_START)


@contextlib.contextmanager
def shared_metrics() -> Iterator[None]:
    """A directory the workers' metrics are written to and summed from (`app.metrics`): the
    operator's PROMETHEUS_MULTIPROC_DIR if set, else a fresh one, removed afterwards."""
    if os.environ.get(SHARED_DIR):
        yield
        return
    directory = tempfile.mkdtemp(prefix="shortlist-metrics-")
    os.environ[SHARED_DIR] = directory  # the workers inherit it
    try:
        yield
    finally:
        del os.environ[SHARED_DIR]
        shutil.rmtree(directory, ignore_errors=True)


class Workers(Multiprocess):
    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        self.loads = Loads(config.workers, multiprocessing.get_context("spawn"))

    def _started(self) -> TakingProcess:
        process = TakingProcess(self.config, self.sockets, self.loads)
        process.start()
        return process

    def init_processes(self) -> None:
        self.processes = [self._started() for _ in range(self.processes_num)]

    def keep_subprocess_alive(self) -> None:
        """uvicorn's, with its workers: a hung worker is killed and a dead one replaced, unless
        it failed to start (then everything stops: it would fail the same way again)."""
        if self.should_exit.is_set():
            return
        for idx, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()
            process.join()
            if process.exitcode == FAILED_TO_START:
                log.error("worker %s failed to start: stopping", process.pid)
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            log.warning("worker %s died: starting another", process.pid)
            self.processes[idx] = self._started()

    def handle_hup(self) -> None:
        for process in self.processes:
            if process.pid is not None and process.process.is_alive():
                os.kill(process.pid, signal.SIGHUP)
        log.warning("SIGHUP passed on to the workers: each loads the newest version")

    def handle_ttin(self) -> None:
        log.warning("SIGTTIN ignored: the number of workers is set by --workers")

    def handle_ttou(self) -> None:
        log.warning("SIGTTOU ignored: the number of workers is set by --workers")

    def failed_to_start(self) -> bool:
        return any(p.exitcode == FAILED_TO_START for p in self.processes)

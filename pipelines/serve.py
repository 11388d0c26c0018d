"""`shortlist serve`: the server composed (the app and the GraphQL schema), in one process or in
several worker processes on one listening socket.

Worker processes are replicas of one another on one host (README "Scaling out"): each loads the
catalog version and keeps its own live state, and they share, through Redis
(SHORTLIST_REDIS_URL, required for more than one worker), the event feed and sequence numbers,
the pinned version, the upserted items' notices and lock, the similar-items cache and the
per-client budgets. The kernel spreads connections over the workers (one shared socket).

The parent process only supervises (uvicorn's `Multiprocess`): it restarts a worker that dies
and stops everything, exiting non-zero, when a worker cannot start. One difference from
uvicorn's: SIGHUP is passed on to every worker, which loads the newest built version in the
background and pins it for the others (what SIGHUP does to one process), where uvicorn would
restart the workers - and a restarted worker starts on the pinned, old version.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys

import uvicorn
from starlette.applications import Starlette
from uvicorn.supervisors import Multiprocess

from app.errors import ConfigError
from app.server import create_app
from app.settings import Settings
from schema.http import graphql_app

STARTUP_FAILURE = 3  # uvicorn's exit code for a server that could not start
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
    supervisor = Workers(config, sockets=[config.bind_socket()])
    supervisor.run()
    if supervisor.failed_to_start():
        sys.exit(STARTUP_FAILURE)


class Workers(Multiprocess):
    def handle_hup(self) -> None:
        for process in self.processes:
            if process.pid is not None and process.process.is_alive():
                os.kill(process.pid, signal.SIGHUP)
        log.warning("SIGHUP passed on to the workers: each loads the newest version")

    def failed_to_start(self) -> bool:
        return any(p.exitcode == STARTUP_FAILURE for p in self.processes)

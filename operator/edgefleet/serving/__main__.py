"""``python3 -m edgefleet.serving``: the container's entry point.

Reads :class:`~edgefleet.serving.config.ServingConfig` from the environment, starts
listening at once (so ``/healthz`` answers 503 while the model loads), loads the
model, and serves until SIGTERM or SIGINT, then finishes the requests in flight and
exits 0. Exit codes: 1 when the model cannot be loaded, 2 for a bad configuration
or an address that cannot be bound.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType

from edgefleet.serving.config import ConfigError, ServingConfig
from edgefleet.serving.logs import JsonLog
from edgefleet.serving.model import ModelError
from edgefleet.serving.server import ServingServer

__all__ = ["main"]


def main() -> int:
    """Run the server; return the process exit code."""
    log = JsonLog(component="edgefleet-serving")
    try:
        config = ServingConfig.from_env(os.environ)
        server = ServingServer(config, log=log)
    except ConfigError as exc:
        log.error("bad_config", error=str(exc))
        return 2
    except OSError as exc:
        log.error("cannot_listen", error=str(exc))
        return 2
    stop = threading.Event()
    exit_code = 0

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del frame
        log.info("signal", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def load() -> None:
        nonlocal exit_code
        try:
            server.load_model()
        except ModelError:
            exit_code = 1
            stop.set()

    server.start()
    threading.Thread(target=load, name="edgefleet-serving-load", daemon=True).start()
    stop.wait()
    server.stop()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())

"""A trial process dies with its sweep's driver: once the driver is gone (SIGKILL, the OOM
killer), nothing of that sweep writes into its experiment folder any more. Ray kills a dead
driver's workers too, but only after a few seconds, time enough for a trial to save one more
checkpoint into a folder the user may already be copying or resuming elsewhere."""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass

import psutil

POLL_S = 0.5  # how often a trial process looks for its driver
EXIT_CODE = 3  # a trial process ended because its driver was gone

_watched: set[DriverIdentity] = set()
_lock = threading.Lock()


@dataclass(frozen=True)
class DriverIdentity:
    """The sweep's driver process: its host, pid and start time (a pid alone may be reused)."""

    host: str
    pid: int
    started: float

    @classmethod
    def current(cls) -> DriverIdentity:
        return cls(socket.gethostname(), os.getpid(), psutil.Process().create_time())

    def alive(self) -> bool:
        """Whether the driver still runs. A driver on another host (a cluster's) cannot be
        seen from here: it counts as alive, and Ray ends its trials when it is gone."""
        if self.host != socket.gethostname():
            return True
        try:
            return psutil.Process(self.pid).create_time() == self.started
        except psutil.NoSuchProcess:
            return False


def watch_driver(driver: DriverIdentity | None) -> None:
    """End this process as soon as ``driver`` is gone (checked every :data:`POLL_S`, from a
    daemon thread started once per process and driver)."""
    if driver is None or driver.pid == os.getpid():  # a trial run in the driver itself
        return
    with _lock:
        if driver in _watched:
            return
        _watched.add(driver)
    threading.Thread(target=_watch, args=(driver,), name="hpsearch-driver-watch",
                     daemon=True).start()


def _watch(driver: DriverIdentity) -> None:
    stop = threading.Event()
    while not stop.wait(POLL_S):
        if not driver.alive():
            # At once, without cleanup: a handler or finally block could still write.
            os._exit(EXIT_CODE)


def stop_if_driver_gone(driver: DriverIdentity | None) -> None:
    """End this process now if ``driver`` is gone: called before each write into the sweep's
    folder, so none starts after the driver died."""
    if driver is not None and driver.pid != os.getpid() and not driver.alive():
        os._exit(EXIT_CODE)

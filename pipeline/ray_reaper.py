"""Stops the processes of a local Ray that logos started, once the driver that started it is gone.

Ray's own guard is kernel fate-sharing: the driver's direct children (GCS, raylet, dashboard) get
SIGKILL when it dies. Their children do not: after ``kill -9`` of a driver, the raylet's dashboard and
runtime-env agents kept running (issue 15). Ray renames those processes (``ray::DashboardAgent``),
which overwrites their command line and environment, so neither can find them; what they all keep is
their log files, open under the session directory. So ``ray_session`` starts this watcher in its own
session (a ``kill`` of the driver's process group spares it), writes the session directory to its
stdin after ``ray.init`` and keeps the pipe open. After a clean ``ray.shutdown()`` the driver writes
``stop`` and the watcher exits. End of input without ``stop`` means the driver died; the watcher then
stops every process holding a file open in that session directory (SIGTERM, then SIGKILL after a grace
period) and exits.

Run as ``python -m pipeline.ray_reaper DRIVER_PID``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

GRACE_S = 3.0


STOP = "stop"


def session_processes(session_dir: str, exclude: int | None = None) -> list:
    """Live processes of this user with a file open under ``session_dir`` (Ray's logs, sockets, spill files)."""
    import psutil

    prefix = session_dir.rstrip("/") + "/"
    found = []
    for process in psutil.process_iter():
        if process.pid in (os.getpid(), exclude):
            continue
        try:
            fd_dir = f"/proc/{process.pid}/fd"
            for fd in os.listdir(fd_dir):
                try:
                    if os.readlink(f"{fd_dir}/{fd}").startswith(prefix):
                        found.append(process)
                        break
                except OSError:
                    continue
        except (OSError, psutil.Error):
            continue
    return found


def stop_session(session_dir: str, grace_s: float = GRACE_S, exclude: int | None = None) -> int:
    """SIGTERM the session's processes (but ``exclude``), SIGKILL what is left after ``grace_s``; returns how
    many were found."""
    import psutil

    processes = session_processes(session_dir, exclude)
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    alive += session_processes(session_dir, exclude)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=grace_s)
    return len(processes)


def main(argv: list[str]) -> int:
    driver_pid = int(argv[0])
    session_dir = sys.stdin.readline().strip()
    rest = sys.stdin.read()  # returns at end of input: the driver closed the pipe or died
    if session_dir and rest.strip() != STOP:
        stop_session(session_dir, exclude=driver_pid)  # a dying driver may not be reaped yet
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the driver's terminal group, not us
    sys.exit(main(sys.argv[1:]))

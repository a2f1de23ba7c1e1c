"""Starting (or joining) Ray once, the same way for every stage."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None,
                runtime_env: dict | None = None) -> Iterator[None]:
    """Use the running Ray, join ``address``, or start a local one; shut down only what we started.

    Local Ray is started lean (no dashboard, small object store) because it shares a laptop-sized
    machine with the work; on a cluster, ``address`` (or ``RAY_ADDRESS``) points at the head node.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, runtime_env=runtime_env)
    else:
        ray.init(
            num_cpus=num_cpus or os.cpu_count(),
            include_dashboard=False,
            object_store_memory=512 * 1024 * 1024,
            logging_level=logging.WARNING,
            log_to_driver=False,
            runtime_env=runtime_env,
        )
    try:
        yield
    finally:
        ray.shutdown()

"""Joining a running Ray cluster: reachability and token authentication, checked before Ray is asked.

Ray 2.60 clusters started with ``ray start --head`` use token authentication whenever a token exists on
the head (``ray start`` turns it on when it finds one; a local ``ray.init()`` generates one). A client
finds the token the way Ray's own CLI does: Ray's ``AuthenticationTokenLoader`` reads ``RAY_AUTH_TOKEN``,
then the file named by ``RAY_AUTH_TOKEN_PATH``, then ``~/.ray/auth_token``. But Ray sends it only when
``RAY_AUTH_MODE=token`` is set in the client's environment, which nobody sets on a laptop; without it
the job client fails with a 40-line ``AuthenticationError`` and ``ray.init(address=...)`` retries for
~20 s before a bare ``ConnectionError``. So, unless the user set ``RAY_AUTH_MODE`` themselves:

- the job client (HTTP) switches token mode on whenever a token is found: a dashboard without
  authentication ignores the header;
- a driver joining by GCS address first asks the GCS once without a token (one RPC, ~15 ms): a cluster
  that answers runs without authentication and the driver stays so (a driver in token mode would refuse
  the cluster's unauthenticated calls to it); one that refuses it needs the token, and token mode is
  switched on before ``ray.init``.

A missing token or an unreachable address is one line (``ClusterError``) naming the address and what to do.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

AUTH_MODE_ENV = "RAY_AUTH_MODE"  # Ray's own variable: "token" or "disabled"
WHERE_THE_TOKEN_GOES = ("put the cluster's token (`ray get-auth-token` on the head node) in ~/.ray/auth_token, "
                        "or set RAY_AUTH_TOKEN, or RAY_AUTH_TOKEN_PATH to a file holding it")
CONNECT_TIMEOUT_S = 5.0


class ClusterError(Exception):
    """A Ray cluster that cannot be used as given: unreachable address, missing or rejected token."""


def auth_token() -> str | None:
    """The token Ray's CLI would send (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token), or None."""
    from ray._raylet import AuthenticationTokenLoader

    loader = AuthenticationTokenLoader.instance()
    loader.reset_cache()  # the environment may have changed since Ray first looked
    if not loader.has_token(ignore_auth_mode=True):
        return None
    return loader.get_raw_token(ignore_auth_mode=True)


def auth_mode_set_by_user() -> bool:
    return bool(os.environ.get(AUTH_MODE_ENV))


def enable_token_auth() -> None:
    """Token mode for this process and what it starts, the way ``ray start`` switches it on."""
    from ray._raylet import Config

    os.environ[AUTH_MODE_ENV] = "token"
    Config.initialize("")  # Ray caches its config; re-read so this process sees the mode


def use_token_if_available() -> bool:
    """For HTTP clients (job submission): send the token whenever one is found, unless the user chose a mode."""
    if auth_mode_set_by_user():
        return os.environ[AUTH_MODE_ENV].lower() == "token"
    if auth_token() is None:
        return False
    enable_token_auth()
    return True


def check_reachable(address: str, what: str) -> None:
    """One TCP connect to ``address`` (``host:port`` or a URL), so a wrong address fails in seconds, not Ray's
    minute of retries."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError as exc:
        raise ClusterError(f"{what} {address!r} is not a valid address: {exc}") from None
    if not host or port is None:
        raise ClusterError(f"{what} {address!r} is not host:port (e.g. 127.0.0.1:6379 or http://head:8265)")
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClusterError(f"cannot reach {what} at {address}: {reason}") from None


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Ray's C++ client logs each refused RPC to fd 2; our one-line error says it better."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def prepare_join(address: str) -> None:
    """Before ``ray.init(address=...)``: the GCS is reachable, and token mode is on iff the cluster needs it.

    ``auto`` (find a local cluster) is left to Ray, which switches token mode on when a token exists.
    ``ray://`` (Ray Client) is refused: Ray Data, which ingest and the dataset stages run on, fails under
    it (``'Worker' object has no attribute 'core_worker'``, Ray 2.60).
    """
    if address == "auto":
        return
    if address.startswith("ray://"):
        head = urlparse(address).hostname or "HEAD"
        raise ClusterError(f"{address}: Ray Client (ray://) cannot run logos's Ray Data stages; join with the "
                           f"head's GCS address instead, e.g. {head}:6379 (what `ray start --head` printed)")
    check_reachable(address, "the Ray cluster (GCS)")
    user_mode = os.environ.get(AUTH_MODE_ENV, "").lower()
    if user_mode != "token":
        if not _gcs_needs_token(address):
            return
        if user_mode:
            raise ClusterError(f"the Ray cluster at {address} requires an auth token and {AUTH_MODE_ENV}={user_mode} "
                               f"here: unset it (or set it to token) and {WHERE_THE_TOKEN_GOES}")
    if auth_token() is None:
        raise ClusterError(f"the Ray cluster at {address} requires an auth token and none was found: "
                           f"{WHERE_THE_TOKEN_GOES}")
    enable_token_auth()
    if _gcs_needs_token(address):
        raise ClusterError(f"the Ray cluster at {address} rejected the auth token found here: "
                           f"{WHERE_THE_TOKEN_GOES}")


def _gcs_needs_token(address: str) -> bool:
    """One GCS call in the current auth mode; True when the cluster refuses it for want of a valid token."""
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError, RpcError

    try:
        with _quiet_stderr():
            GcsClient(address=address).internal_kv_get(b"logos-probe", None, timeout=CONNECT_TIMEOUT_S)
    except AuthenticationError:
        return True
    except RpcError as exc:
        raise ClusterError(f"the Ray cluster at {address} did not answer: {exc}") from None
    return False

"""One error style for every ``logos`` command: an expected error is one line on stderr naming the thing
and the fix, exit code 2 for a usage error (a wrong name, path, option or layout) and 1 for a failure
(the command was right, the world was not: missing credentials, a run that crashed). Anything else is a
bug and keeps its traceback. ``logos -v`` keeps every traceback.

Subcommands that already print their own one line return their code themselves; this is the net under
all of them, so a ``FileNotFoundError`` raised three layers down is still one line.
"""

from __future__ import annotations

USAGE, FAILURE = 2, 1
CREDENTIALS_FIX = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment, "
                   "and AWS_ENDPOINT_URL for a store other than AWS")


def _usage_types() -> tuple[type[BaseException], ...]:
    from grammar.errors import GrammarError
    from pipeline.options import ConfigError
    from pipeline.ray_cluster import ClusterError
    from pipeline.versions import DatasetNotFound
    from training.errors import TrainingError

    found: list[type[BaseException]] = [ConfigError, ClusterError, DatasetNotFound, TrainingError, GrammarError,
                                        FileNotFoundError, NotADirectoryError, IsADirectoryError]
    for module, name in (("pipeline.versions.stage", "InputError"), ("pipeline.split", "SplitError"),
                         ("pipeline.export_megatron", "ExportError"), ("training.evaluation.tasks", "EvalError")):
        try:
            found.append(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError):  # a module being reorganised must not break error reporting
            continue
    return tuple(found)


def _failure_types() -> tuple[type[BaseException], ...]:
    """Errors of a right command in a failing world, checked before the usage types (``InputUnreadable`` is
    an ``InputError``): an input that is there but cannot be read, a partition whose worker kept dying."""
    found: list[type[BaseException]] = []
    for module, name in (("pipeline.versions.stage", "InputUnreadable"),
                         ("pipeline.partition_tasks", "PartitionFailed")):
        try:
            found.append(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError):  # a module being reorganised must not break error reporting
            continue
    return tuple(found)


def user_error(exc: BaseException) -> tuple[str, int] | None:
    """``(one line, exit code)`` for an expected error, ``None`` for a bug."""
    from pipeline.redact import redact_text

    line = _classify(_unwrapped(exc))
    if line is None:
        return None
    message, code = line
    return redact_text(" ".join(message.split())), code  # one line; never a credential


def _unwrapped(exc: BaseException) -> BaseException:
    """The error a Ray task raised, out of Ray's wrappers (a workflow node run with ``executor: ray``, a task
    whose input came from a failed task): the wrapper's message is the remote traceback, the cause's the line."""
    import sys

    exceptions = sys.modules.get("ray.exceptions")  # loaded whenever a Ray error can exist
    while exceptions is not None and isinstance(exc, exceptions.RayTaskError) \
            and isinstance(getattr(exc, "cause", None), BaseException):
        exc = exc.cause
    return exc


def _classify(exc: BaseException) -> tuple[str, int] | None:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError  # s3fs's, a dependency

    if isinstance(exc, NoCredentialsError):
        return f"no credentials for object storage (s3://): {CREDENTIALS_FIX}", FAILURE
    if isinstance(exc, ClientError | BotoCoreError):
        return f"object storage: {exc}; check the URI and {CREDENTIALS_FIX}", FAILURE
    if isinstance(exc, PermissionError):
        return f"{exc.filename or exc}: permission denied; check the path or its credentials", FAILURE
    from training.launch import LaunchError
    from workflows.workspace import InjectedFailure

    if isinstance(exc, InjectedFailure):
        return str(exc), FAILURE
    if isinstance(exc, LaunchError) and "\n" in str(exc):  # a run that started and failed: its first line
        return str(exc).splitlines()[0].rstrip(":") + " (the ranks' logs are in its run_dir/logs)", FAILURE
    if isinstance(exc, _failure_types()):
        return str(exc) or type(exc).__name__, FAILURE
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"{exc.filename}: no such file or directory", USAGE
    if isinstance(exc, _usage_types()):
        return str(exc) or type(exc).__name__, USAGE
    return None

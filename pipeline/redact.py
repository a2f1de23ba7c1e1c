"""Credentials never persist: one redaction used by every writer of summaries, manifests, run records,
reports and log or error lines.

A workflow or ``-o`` option may carry fsspec ``storage_options`` (``{key: ..., secret: ...}`` for
s3fs, ``token`` for gcsfs, ``account_key``/``sas_token`` for adlfs, ...). Those values must reach the
filesystem, but nothing written to disk or printed may hold them: a run record or an ingest summary is
shared with the dataset, and a secret in it is leaked. Secrets belong in the environment or a named
profile (``AWS_PROFILE``); what is written keeps the key and says ``<redacted>``.

Which keys are secret is decided by name (fsspec backends and boto/botocore spell them this way); a
URI's ``user:password@`` part is redacted too. ``redact_text`` removes the secret values of a known
config from free text, for error messages that quote an option.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

REDACTED = "<redacted>"

# Exact names (lower case) whose values are credentials. "key" is s3fs's access key id.
SECRET_KEYS = frozenset({
    "key", "secret", "token", "password", "passwd", "passphrase", "session_token", "security_token",
    "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "access_key", "access_key_id",
    "secret_key", "secret_access_key", "client_secret", "api_key", "apikey", "auth_token", "account_key",
    "sas_token", "credential", "credentials", "private_key", "refresh_token", "bearer_token",
})
# Any name ending so is a credential too (``hf_token``, ``db_password``, ``minio_secret``).
SECRET_SUFFIXES = ("_secret", "_token", "_password", "_secret_key", "_access_key", "_api_key", "_credentials")
# Names that end like a secret but are not one (e.g. a tokenizer's end-of-document token).
NOT_SECRET = frozenset({"eod_token", "bos_token", "eos_token", "pad_token", "unk_token", "sep_token", "mask_token",
                        "cls_token"})
_URI_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/@\s:]*:)(?P<password>[^/@\s]+)(?=@)")


def is_secret_key(name: Any) -> bool:
    """Whether a mapping key names a credential."""
    if not isinstance(name, str):
        return False
    lowered = name.lower().replace("-", "_")
    if lowered in NOT_SECRET:
        return False
    return lowered in SECRET_KEYS or lowered.endswith(SECRET_SUFFIXES)


def redact(value: Any) -> Any:
    """A copy of ``value`` (mappings, lists, strings, scalars) with every credential replaced by ``<redacted>``:
    the values of secret-named keys at any depth, and passwords inside URIs."""
    if isinstance(value, dict):
        return {k: (REDACTED if is_secret_key(k) and v not in (None, "") else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, tuple):
        return tuple(redact(v) for v in value)
    if isinstance(value, str):
        return _URI_PASSWORD.sub(lambda m: m.group("head") + REDACTED, value)
    return value


def secret_values(value: Any) -> set[str]:
    """The credential strings inside ``value`` (as ``redact`` finds them), for ``redact_text``."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if is_secret_key(key) and isinstance(item, str | int) and str(item):
                found.add(str(item))
            else:
                found |= secret_values(item)
    elif isinstance(value, list | tuple):
        for item in value:
            found |= secret_values(item)
    elif isinstance(value, str):
        found |= {m.group("password") for m in _URI_PASSWORD.finditer(value)}
    return found


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with each of ``secrets`` and any URI password replaced by ``<redacted>``."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= 4:  # a 1-3 character "secret" would redact ordinary words; none is that short
            text = text.replace(secret, REDACTED)
    return redact(text)

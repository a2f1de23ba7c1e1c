"""Versioned datasets: Delta tables plus content-addressed manifests (see ``store`` and ``manifest``)."""

from pipeline.versions.manifest import InputRef, Manifest, TableRef, code_version, version_id
from pipeline.versions.store import DatasetNotFound, DatasetStore

__all__ = ["DatasetNotFound", "DatasetStore", "InputRef", "Manifest", "TableRef", "code_version", "version_id"]

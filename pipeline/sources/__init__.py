"""The ingest sources, by name. Each is a ``pipeline.sources.base.Source``."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from pipeline.options import from_mapping
from pipeline.sources.base import Source

# name -> "module:Class"; each class is a dataclass with one field, ``config``, its typed options.
SOURCES: dict[str, str] = {
    "pdb": "pipeline.sources.pdb:PdbSource",
    "chembl": "pipeline.sources.chembl:ChemblSource",
    "mp": "pipeline.sources.mp:MpSource",
    "uspto": "pipeline.sources.uspto:UsptoSource",
    "smiles": "pipeline.sources.smiles:SmilesSource",
    "uniprot": "pipeline.sources.uniprot:UniprotSource",
    "mof": "pipeline.sources.mof:MofSource",
    "antibody": "pipeline.sources.antibody:AntibodySource",
}
# The domain an item belongs to before it is converted (for accounting of items rejected whole).
PRIMARY_DOMAIN = {"pdb": "protein", "chembl": "molecule", "smiles": "molecule", "uspto": "reaction", "mp": "material",
                  "uniprot": "protein", "mof": "material",
                  "antibody": "antibody"}


def source_class(name: str) -> type:
    if name not in SOURCES:
        raise ValueError(f"unknown source {name!r}; choose one of {sorted(SOURCES)}")
    module, cls = SOURCES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def config_class(name: str) -> type:
    config_field = next(f for f in dataclasses.fields(source_class(name)) if f.name == "config")
    return type(config_field.default_factory())


def make_source(name: str, options: dict[str, Any] | None = None) -> Source:
    """A source with its options checked and typed (an unknown or ill-typed option names itself)."""
    return source_class(name)(config=from_mapping(config_class(name), options or {}, path=name))

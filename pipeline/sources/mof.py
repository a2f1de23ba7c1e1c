"""Metal-organic frameworks from CIFs (CoRE MOF ``*_clean.cif``, QMOF, any framework CIF) as ``mof`` samples.

Each structure a CIF holds goes through the building-block decomposition of
``grammar.material.mof_decomposition`` (bonds by covalent radii, metal-free fragments, RDKit bond orders
and charges, one oxidation state per metal) and becomes one ``mof`` sample
``<MaterialS><MetalS>node<MetalE>…<MoleculeS>linker<MoleculeE>…<MaterialE>`` in the ``material`` domain.

Rejects carry the decomposition's own reason codes: ``disordered_structure`` (partial occupancies: the
bond network needs one atom per site, so disordered CIFs are refused, never ordered by guess),
``mof_charge_unbalanced`` (no single oxidation state balances the linkers, typically a ``clean`` CoRE
file that lost its counter-ions), ``mof_mixed_metals``, ``mof_unbound_fragment`` (solvent or a free ion),
``mof_periodic_organic_part``, ``mof_rod_sbu``, ``mof_no_closed_shell``, ``mof_no_metal``; a CIF
pymatgen cannot read is ``invalid_cif``.

Dedup key: the decomposition, ``mof:<hash>`` of the sorted node SMILES and the sorted linker InChIKeys
(InChI, not SMILES, so that two tautomers or resonance forms RDKit writes differently still meet); the
split group is ``key:<dedup key>``, so one framework never sits in two splits. Counts of each building
block in the cell, the reduced formula and the database (from the file name: ``*_clean`` CoRE MOF,
``qmof-*`` QMOF) go in the metadata.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pymatgen.core import Structure
from pymatgen.io.cif import CifParser
from rdkit import Chem

from grammar.formats import FORMATS
from grammar.material.mof import MOF
from grammar.material.mof_decomposition import decompose_mof
from pipeline.io import open_text
from pipeline.records import Reject, Sample, SourceItem, dedup_key
from pipeline.sources.base import Conversion, metadata_without_nones, reject_from
from pipeline.sources.smiles import file_stem, guarded

CORE_MOF = re.compile(r"_clean(_h)?$")
QMOF = re.compile(r"^qmof-[0-9a-f]+$")


class InvalidCif(ValueError):
    reason_code = "invalid_cif"


@dataclass(frozen=True, slots=True)
class MofConfig:
    storage_options: dict[str, Any] | None = field(default=None, hash=False)


@dataclass
class MofSource:
    name: ClassVar[str] = "mof"
    suffixes: ClassVar[tuple[str, ...]] = (".cif", ".cif.gz")
    chunk_items: ClassVar[int] = 16  # 0.05-1 s per CIF (parse + decomposition), most of it pymatgen's CIF parse

    config: MofConfig = field(default_factory=MofConfig)

    def read(self, uri: str) -> Iterator[SourceItem | Reject]:
        return guarded(self.name, uri, self._items(uri))

    def _items(self, uri: str) -> Iterator[SourceItem]:
        stem = file_stem(uri)
        name = stem[: -len(".cif")] if stem.lower().endswith(".cif") else stem
        with open_text(uri, self.config.storage_options) as stream:
            text = stream.read()
        if text.strip():
            yield SourceItem(self.name, uri, "file", {"cif": text, "id": name})

    def convert(self, item: SourceItem) -> Conversion:
        payload = item.payload
        try:
            with warnings.catch_warnings():  # pymatgen warns on every CoRE file (rounded coordinates, no symmetry)
                warnings.simplefilter("ignore")
                structures = CifParser.from_str(payload["cif"]).parse_structures(primitive=False)
            if not structures:
                raise ValueError("no structure in any data block")
        except Exception as exc:  # pymatgen raises ValueError, KeyError, IndexError on malformed CIFs
            return Conversion(rejects=[reject_from(item, "parse", InvalidCif(f"pymatgen cannot read the CIF: {exc}"))])
        conversion = Conversion()
        for index, structure in enumerate(structures):
            several = len(structures) > 1
            source_id = f"{payload['id']}#{index + 1}" if several else payload["id"]
            try:
                conversion.samples.append(mof_sample(structure, source_id))
            except ValueError as exc:  # grammar errors (the decomposition's) are ValueErrors with a reason_code
                part = f"structure {index + 1}" if several else None
                conversion.rejects.append(reject_from(item, "convert", exc, part))
        return conversion


def mof_sample(structure: Structure, source_id: str) -> Sample:
    decomposition = decompose_mof(structure, source_id)
    mof = decomposition.mof
    key = mof_key(mof)
    metadata = metadata_without_nones(
        database=database_of(source_id), formula=structure.composition.reduced_formula, sites=len(structure),
        building_blocks=dict(sorted(decomposition.counts.items())),
    )
    return Sample("material", "mof", FORMATS["mof"].write(mof), source_id, key, metadata, split_group=f"key:{key}",
                  obj=mof)


def mof_key(mof: MOF) -> str:
    """``mof:<hash>`` of the sorted node SMILES and the sorted linker InChIKeys (canonical SMILES where InChI
    gives no key)."""
    linkers = sorted(Chem.MolToInchiKey(Chem.MolFromSmiles(m.smiles)) or m.smiles for m in mof.linkers)
    return dedup_key("mof", f"{'.'.join(mof.nodes)}>{'.'.join(linkers)}")


def database_of(source_id: str) -> str | None:
    name = source_id.split("#", 1)[0]
    if CORE_MOF.search(name):
        return "CoRE MOF"
    if QMOF.match(name):
        return "QMOF"
    return None

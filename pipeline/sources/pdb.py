"""The PDB / wwPDB source: mmCIF, ``.cif.gz`` and legacy ``.pdb``/``.ent`` entries -> grammar samples.

Per entry (first model; see ``pdb_structure`` for altlocs and sequences) it emits:
- ``protein``: one sample per distinct protein chain sequence (polypeptide(L) entities);
- per ligand instance that touches a protein: ``pocket``, ``pocket_smiles``, the three complex forms,
  ``search`` and ``trans``, over the protein chains the pocket touches.

Policy, all in ``PdbConfig``:
- Ligands are non-polymer residues other than water and ``excluded_components`` (by default the artefacts
  of BioLiP's ``ligand_list`` and PLINDER's ``artifacts_badlist``, vendored in ``data/``, plus metal ions),
  with at least ``min_ligand_heavy_atoms`` heavy atoms.
  Metal ions are excluded by default: most ions in the PDB are buffer or cryo components, and a
  one-atom "ligand" says little about small-molecule binding; catalytic metals are a real loss, so
  keep them with ``min_ligand_heavy_atoms=1`` and ``excluded_components=DEFAULT_EXCLUDED - METAL_IONS``.
- A branched entity instance (an oligosaccharide) is ONE ligand: its residues joined by the structure's
  links with the CCD's leaving atoms removed (``ccd.linked_component_smiles``), named by its members
  (``BGC-GLC-GLC``). Glycans covalently linked to the protein (N-/O-glycans, and single sugars linked to
  it) are post-translational modifications, not ligands that bind a pocket: skipped unless
  ``include_glycans``. Oligosaccharides bound without a covalent link (maltotriose in an amylase) are kept.
- A ligand with fewer than ``min_observed_heavy_atom_fraction`` of its CCD heavy atoms modelled is a
  ``ligand_incomplete`` reject (default 1.0, covalent ligands exempt: PLINDER's quality rule).
- Covalent ligands (inhibitors, chromophores) are kept and flagged ``covalent`` in the metadata.
- Identical samples within an entry (symmetric copies of a ligand in the same pocket) are written once;
  ``copies`` in the metadata lists every instance. Across entries, the dedup stage works on
  ``dedup_key``: the task plus what its text carries (sequences; ligand InChIKey where the text has the
  ligand; pocket positions where the text marks them), so a pocket text shared by two ligands is one.
- Skipped components are not rejects (they are policy, not failures); each protein sample counts them
  in ``ligands_skipped``. Everything that fails is a ``Reject`` with a reason code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from grammar.formats import FORMATS
from grammar.pocket import DEFAULT_POCKET_CUTOFF
from pipeline.io import CorruptInput, read_bytes
from pipeline.records import Reject, Sample, SourceItem
from pipeline.sources.base import Conversion, reject_from
from pipeline.sources.ccd import ComponentDictionary, ComponentError, ComponentSmiles, perceive_smiles
from pipeline.sources.pdb_structure import Entry, Ligand, StructureError, load_entry
from pipeline.sources.pockets import PocketSearch, ligand_samples, protein_sample

METAL_IONS = frozenset({
    "LI", "NA", "K", "RB", "CS", "MG", "CA", "SR", "BA", "MN", "FE", "FE2", "CO", "3CO", "NI", "CU", "CU1",
    "CU3", "ZN", "CD", "HG", "AG", "AU", "AU3", "PT", "PD", "PB", "AL", "GA", "IN", "TL", "YB", "LA", "CE",
    "EU", "GD", "SM", "TB", "HO", "ER", "LU", "Y1", "ZR", "MO", "W", "V", "CR", "SB", "OS", "IR", "RU", "RH",
})


def _artifact_lists() -> tuple[frozenset[str], frozenset[str]]:
    """BioLiP's list of non-biological ligands and PLINDER's artifact badlist, as vendored in
    ``data/`` (both from github:plinder-org/plinder, Apache-2.0; see ``data/README.md``)."""
    data = Path(__file__).with_name("data")
    biolip = (data / "biolip_ligand_list.tsv").read_text().splitlines()
    plinder = (data / "plinder_artifacts_badlist.csv").read_text().splitlines()
    return (
        frozenset(line.split("\t")[0].strip() for line in biolip if line.strip()),
        frozenset(line.strip() for line in plinder if line.strip() and not line.startswith("#")),
    )


# Artefacts (crystallization, cryo-protection, buffer, detergent and lipid components, and ions): the union
# of BioLiP's ``ligand_list`` (Yang, Roy & Zhang, Nucleic Acids Res. 2013; Zhang et al. 2024) and PLINDER's
# ``artifacts_badlist`` (Durairaj et al. 2024, curated against BioLiP, AF2 and RFAA lists). Not hand-made.
BIOLIP_ARTIFACTS, PLINDER_ARTIFACTS = _artifact_lists()
DEFAULT_EXCLUDED = METAL_IONS | BIOLIP_ARTIFACTS | PLINDER_ARTIFACTS
ALL_TASKS = (
    "protein", "pocket", "pocket_smiles", "complex_residue_smiles", "complex_residue_surface_smiles",
    "complex_residue_surface_expanded_smiles", "search", "trans",
)
SUFFIXES = (".cif", ".cif.gz", ".mmcif", ".mmcif.gz", ".pdb", ".pdb.gz", ".ent", ".ent.gz")


@dataclass(frozen=True)
class PdbConfig:
    pocket_cutoff: float = DEFAULT_POCKET_CUTOFF  # Å, heavy atom to heavy atom (PLINDER)
    excluded_components: frozenset[str] = DEFAULT_EXCLUDED
    min_ligand_heavy_atoms: int = 2
    # Observed / CCD heavy atoms below this is a ``ligand_incomplete`` reject. 1.0 as PLINDER's quality
    # filter (``ligand_max_num_unresolved_heavy_atoms = 0``, covalent ligands exempt) and PoseBusters: the
    # text carries the whole CCD molecule, so a partly modelled ligand pairs atoms with no coordinates.
    min_observed_heavy_atom_fraction: float = 1.0
    include_glycans: bool = False
    components_path: str | None = None  # a user components.cif(.gz); looked up before biotite's CCD
    use_bundled_ccd: bool = True
    perceive_unknown_components: bool = True  # bond orders from coordinates (needs modelled hydrogens)
    allow_connectivity_only_smiles: bool = False  # single-bonded stand-in when bond orders are unknown
    min_chain_length: int = 5
    max_chain_length: int | None = None
    max_nonstandard_fraction: float = 0.5  # modified/unknown residues; echinomycin-like peptides fail
    tasks: tuple[str, ...] = ALL_TASKS
    storage_options: dict[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        unknown = [t for t in self.tasks if t not in FORMATS or t not in ALL_TASKS]
        if unknown:
            raise ValueError(f"PdbConfig.tasks: {unknown} are not PDB tasks ({', '.join(ALL_TASKS)})")
        if self.pocket_cutoff <= 0:
            raise ValueError(f"PdbConfig.pocket_cutoff must be positive, got {self.pocket_cutoff}")
        if not 0.0 <= self.min_observed_heavy_atom_fraction <= 1.0:
            fraction = self.min_observed_heavy_atom_fraction
            raise ValueError(f"PdbConfig.min_observed_heavy_atom_fraction must be in [0, 1], got {fraction}")


@dataclass
class PdbSource:
    name: ClassVar[str] = "pdb"
    suffixes: ClassVar[tuple[str, ...]] = SUFFIXES  # what directory inputs are filtered to
    chunk_items: ClassVar[int] = 16  # entries per part (chunks span files): 0.02-0.5 s per entry
    config: PdbConfig = field(default_factory=PdbConfig)

    def __post_init__(self) -> None:
        self.components = ComponentDictionary(
            self.config.components_path,
            use_bundled=self.config.use_bundled_ccd,
            storage_options=self.config.storage_options,
        )

    def read(self, uri: str) -> Iterator[SourceItem | Reject]:
        """One item per file; unreadable files (corrupt gzip, empty, not UTF-8, no atoms) are rejects."""
        try:
            data = read_bytes(uri, self.config.storage_options)
            if not data.strip():
                raise CorruptInput("empty_file", f"{uri}: empty file")
            text = data.decode("utf-8")
            entry_id = sniff_entry_id(text)
            if entry_id is None and not _ATOM_RECORD.search(text):
                raise CorruptInput("not_a_structure", f"{uri}: neither an mmCIF block nor PDB atom records")
        except CorruptInput as exc:
            yield Reject(self.name, uri, "file", "read", exc.reason_code, str(exc))
        except UnicodeDecodeError as exc:
            reason = f"{uri}: not UTF-8 text (byte {exc.start}: {exc.reason})"
            yield Reject(self.name, uri, "file", "read", "not_utf8", reason)
        except OSError as exc:
            yield Reject(self.name, uri, "file", "read", "unreadable", f"{uri}: {exc}")
        else:
            yield SourceItem(self.name, uri, f"entry {entry_id}" if entry_id else "file", data)

    def convert(self, item: SourceItem) -> Conversion:
        text = item.payload.decode("utf-8") if isinstance(item.payload, bytes) else item.payload
        try:
            entry = load_entry(text, fallback_id=entry_id_from_file_name(item.uri))
        except StructureError as exc:
            return Conversion(rejects=[reject_from(item, "parse", exc)])
        return EntryConverter(entry, item, self.config, self.components).run()


_ATOM_RECORD = re.compile(r"^(ATOM  |HETATM)", re.MULTILINE)
_MMCIF_BLOCK = re.compile(r"^data_(\S+)", re.MULTILINE)


def sniff_entry_id(text: str) -> str | None:
    """The entry id without parsing: the mmCIF block name, or a PDB HEADER's idCode (columns 63-66)."""
    head = text[:4096]
    block = _MMCIF_BLOCK.search(head)
    if block and "_atom_site." in text:
        return block.group(1).upper()
    if head.startswith("HEADER") and head[62:66].strip():
        return head[62:66].strip().upper()
    return None


def file_stem(uri: str) -> str:
    name = PurePosixPath(uri.split("://")[-1]).name
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


_WWPDB_FILE_NAME = re.compile(r"^pdb([0-9][a-z0-9]{3})$", re.IGNORECASE)


def entry_id_from_file_name(uri: str) -> str:
    """The id a file name gives an entry that names none: the stem, with the wwPDB archive's ``pdb`` prefix
    dropped (``pdb3mht.ent.gz`` is entry 3MHT)."""
    stem = file_stem(uri)
    archived = _WWPDB_FILE_NAME.match(stem)
    return archived.group(1) if archived else stem


class EntryConverter:
    """Samples and rejects of one parsed entry under one config."""

    def __init__(self, entry: Entry, item: SourceItem, config: PdbConfig, components: ComponentDictionary) -> None:
        self.entry, self.item, self.config, self.components = entry, item, config, components
        self.samples: dict[tuple[str, str], Sample] = {}  # (task, dedup_key) -> first sample
        self.rejects: list[Reject] = []
        self.skipped: dict[str, dict[str, int]] = {}

    def run(self) -> Conversion:
        chains = [i for i, chain in enumerate(self.entry.chains) if self._chain_usable(i)]
        if not chains:
            found = ", ".join(self.entry.other_polymers) or "none"
            reason = f"no usable protein chain (other polymers: {found})"
            self.rejects.append(reject_from(self.item, "convert", StructureError("no_protein_chain", reason)))
            return Conversion([], self.rejects)
        ligands = self._ligand_candidates()
        if not set(self.config.tasks) - {"protein"}:
            ligands = []  # no ligand task asked for: skip the pocket search and the CCD
        if self.entry.ca_only:
            error = StructureError("ca_only_model", "CA-only trace: no pocket or complex samples; sequences kept")
            self.rejects.append(reject_from(self.item, "convert", error, part="structure"))
        elif ligands:
            search = PocketSearch(self.entry, chains)
            for ligand in ligands:
                self._add_ligand(search, ligand)
        proteins = protein_sample_list(self.entry, chains, self.skipped) if "protein" in self.config.tasks else []
        return Conversion(proteins + list(self.samples.values()), self.rejects)

    def _chain_usable(self, index: int) -> bool:
        chain, config = self.entry.chains[index], self.config
        length = len(chain.sequence)
        problem = None
        if length < config.min_chain_length:
            problem = ("chain_too_short", f"{length} residues < min_chain_length {config.min_chain_length}")
        elif config.max_chain_length is not None and length > config.max_chain_length:
            problem = ("chain_too_long", f"{length} residues > max_chain_length {config.max_chain_length}")
        elif chain.nonstandard > config.max_nonstandard_fraction * length:
            problem = ("mostly_nonstandard", f"{chain.nonstandard} of {length} residues are modified or unknown")
        if problem:
            error = StructureError(problem[0], f"protein chain {chain.chain_id}: {problem[1]}")
            self.rejects.append(reject_from(self.item, "convert", error, part=f"chain {chain.chain_id}"))
        return problem is None

    def _ligand_candidates(self) -> list[Ligand]:
        kept = []
        for ligand in self.entry.ligands:
            if ligand.glycan and not self.config.include_glycans:
                why = "glycan"  # before the artefact lists, which name some sugars (NAG, NDG)
            elif ligand.ccd_id in self.config.excluded_components:
                why = "excluded_component"
            elif ligand.heavy_atoms < self.config.min_ligand_heavy_atoms:
                why = "too_few_heavy_atoms"
            else:
                kept.append(ligand)
                continue
            counts = self.skipped.setdefault(why, {})
            counts[ligand.ccd_id] = counts.get(ligand.ccd_id, 0) + 1
        return kept

    def _add_ligand(self, search: PocketSearch, ligand: Ligand) -> None:
        part = f"ligand {ligand.residue_id} {ligand.ccd_id}"
        cutoff = self.config.pocket_cutoff
        rows = search.residues_near(ligand.rows or (ligand.row,), cutoff)
        try:
            if not len(rows):
                raise StructureError("no_pocket", f"no protein heavy atom within {cutoff} Å")
            smiles = self._smiles(ligand)
            self._check_complete(ligand, smiles)
            for sample in ligand_samples(self.entry, ligand, rows, smiles, cutoff, self.config.tasks):
                key = (sample.task, sample.dedup_key)
                if key in self.samples:
                    self.samples[key].metadata["copies"].append(ligand.residue_id)
                else:
                    self.samples[key] = sample
        except (StructureError, ComponentError, ValueError) as exc:  # GrammarError is a ValueError
            self.rejects.append(reject_from(self.item, "convert", exc, part=part))

    def _check_complete(self, ligand: Ligand, component: ComponentSmiles) -> None:
        """Covalent ligands are exempt (as in PLINDER): their CCD entry keeps the leaving atoms."""
        observed, expected = ligand.heavy_atoms, component.heavy_atoms
        if ligand.covalent or not expected:
            return
        if observed < self.config.min_observed_heavy_atom_fraction * expected:
            raise StructureError(
                "ligand_incomplete",
                f"{observed} of {expected} heavy atoms modelled < min_observed_heavy_atom_fraction "
                f"{self.config.min_observed_heavy_atom_fraction}",
            )

    def _smiles(self, ligand: Ligand) -> ComponentSmiles:
        if ligand.members:
            return self.components.linked(ligand.ccd_id, ligand.members, ligand.links)
        found = self.components.lookup(ligand.ccd_id)
        if found is not None:
            return found
        if not self.config.perceive_unknown_components:
            raise ComponentError("unknown_component", f"{ligand.ccd_id} is in no chemical component dictionary")
        return perceive_smiles(
            ligand.ccd_id, list(ligand.elements), ligand.positions, ligand.formal_charge,
            allow_connectivity_only=self.config.allow_connectivity_only_smiles,
        )


def protein_sample_list(entry: Entry, chains: list[int], skipped: dict[str, dict[str, int]]) -> list[Sample]:
    by_sequence: dict[str, list[int]] = {}
    for index in chains:
        by_sequence.setdefault(entry.chains[index].sequence, []).append(index)
    return [protein_sample(entry, indices, skipped) for indices in by_sequence.values()]

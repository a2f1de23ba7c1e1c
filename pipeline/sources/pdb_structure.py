"""One PDB / wwPDB entry read with gemmi and reduced to what the PDB source writes grammar from.

``load_entry(text)`` parses mmCIF or legacy PDB text, keeps one model (the first of NMR ensembles), drops
hydrogens and waters, resolves alternate locations, and returns an ``Entry``: protein chains with
their sequences, ligand candidates (non-polymer residues, and each branched entity instance as one), the
polymer types of the other chains, and a flat heavy-atom table for the pocket search.

Choices (why):
- Sequences are the full deposited sequence (``_entity_poly_seq`` / SEQRES, first monomer where the
  entity lists micro-heterogeneity), so a chain with disordered loops still reads as the protein it is.
  A residue's sequence position is its ``label_seq`` - 1. Where there is no deposited sequence, or a
  modelled residue cannot be placed on it, the chain falls back to its modelled residues
  (``Chain.sequence_source`` says which).
- One-letter codes come from the CCD's ``_chem_comp.one_letter_code`` (else its parent's code): MSE -> M,
  D-residues their L parent's letter, chromophores the tripeptide they formed from (CRO -> TYG), anything
  else X — the rule of wwPDB's ``pdbx_seq_one_letter_code_can``. A chromophore's residue sits on its
  first letter, so a pocket marks that letter only.
- Alternate locations: per residue, keep the altloc with the highest mean occupancy (ties: the first
  id; letters and the digits of old files alike); where a position holds several residue names
  (micro-heterogeneity), the residue of the best conformer. gemmi's ``remove_alternative_conformations``
  keeps the *first* conformer instead, so it is not used; the choice runs on gemmi's flat numpy view.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property, lru_cache

import gemmi
import numpy as np

from grammar.protein import RESIDUE_ALPHABET, nonstandard_residues
from pipeline.sources.ccd import peptide_one_letter_codes

_RESIDUES = frozenset(RESIDUE_ALPHABET)

ATOM_RECORD_GROUPS = frozenset({"ATOM", "HETATM"})
POLYMER_TYPE_NAMES = {
    gemmi.PolymerType.PeptideL: "protein",
    gemmi.PolymerType.PeptideD: "D-peptide",
    gemmi.PolymerType.Dna: "DNA",
    gemmi.PolymerType.Rna: "RNA",
    gemmi.PolymerType.DnaRnaHybrid: "DNA/RNA hybrid",
}


class StructureError(ValueError):
    """An entry that cannot be read as a macromolecular structure."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code


@dataclass(slots=True)
class Chain:
    """A protein chain: its sequence and where its modelled residues sit in it."""

    chain_id: str
    entity_id: str
    sequence: str
    sequence_source: str  # "deposited" (entity sequence / SEQRES) | "modelled"
    nonstandard: int  # residues that are not standard amino acids (modified, unknown)
    residue_smiles: tuple[tuple[int, str], ...] = ()  # (position, CCD SMILES) of non-standard residues


@dataclass(slots=True)
class Ligand:
    """A ligand candidate: one non-polymer residue instance, or one instance of a branched entity (an
    oligosaccharide: its residues, and the links between them, as one molecule)."""

    ccd_id: str
    chain_id: str
    residue_id: str  # "A:401", "B:-3", "H:52A"
    row: int  # its row in Entry.residue_ids
    branched: bool  # a branched entity (oligosaccharide)
    glycan: bool  # a sugar or branched entity covalently linked to a polymer residue (N-/O-glycan)
    covalent: bool  # covalently linked to a polymer residue (struct_conn / LINK)
    heavy_atoms: int
    elements: tuple[str, ...]  # element symbols of all its modelled atoms, hydrogens included
    positions: np.ndarray  # (n, 3) coordinates of those atoms
    formal_charge: int
    rows: tuple[int, ...] = ()  # every residue row of the ligand (one for a non-polymer)
    members: tuple[str, ...] = ()  # CCD ids of a branched ligand's residues, in file order
    links: tuple[tuple[int, str, int, str], ...] = ()  # (member, atom, member, atom) covalent links inside it


@dataclass(slots=True)
class Entry:
    entry_id: str
    file_format: str  # "mmcif" | "pdb"
    method: str | None
    resolution: float | None
    deposition_year: int | None
    model_number: int
    chains: list[Chain]  # protein chains, in file order
    other_polymers: list[str]  # polymer types of the non-protein chains ("DNA", "RNA", ...)
    ligands: list[Ligand]
    residue_ids: list[str]  # every residue kept in the model, in model order
    residue_chain: np.ndarray  # (R,) index into ``chains``; -1 outside protein chains
    residue_position: np.ndarray  # (R,) position in that chain's sequence; -1 outside protein chains
    atom_residue: np.ndarray  # (N,) residue row of each heavy atom, non-decreasing (file order)
    atom_positions: np.ndarray  # (N, 3) float
    ca_only: bool  # most protein residues carry a single atom: a CA trace, not an atomic model

    def atom_rows(self, residue_row: int) -> np.ndarray:
        """Rows of ``atom_positions`` of one residue (atoms are stored residue by residue)."""
        start, end = np.searchsorted(self.atom_residue, [residue_row, residue_row + 1])
        return np.arange(start, end)


def parse_structure(text: str) -> tuple[gemmi.Structure, str]:
    """mmCIF when the first data line starts a CIF block, else legacy PDB."""
    if _first_content_line(text).startswith("data_"):
        return _parse_mmcif(text), "mmcif"
    return _parse_pdb(text), "pdb"


def _first_content_line(text: str) -> str:
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        line = text[start:end].strip()
        if line and not line.startswith("#"):
            return line
        start = end + 1
    return ""


def _parse_mmcif(text: str) -> gemmi.Structure:
    try:
        block = gemmi.cif.read_string(text).sole_block()
    except (RuntimeError, ValueError) as exc:
        raise StructureError("mmcif_syntax", f"mmCIF does not parse (truncated or malformed): {exc}") from exc
    groups = set(block.find_values("_atom_site.group_PDB"))
    if groups - ATOM_RECORD_GROUPS:
        bad = sorted(groups - ATOM_RECORD_GROUPS)
        raise StructureError("invalid_atom_site", f"_atom_site.group_PDB holds {bad}, not ATOM/HETATM")
    try:
        return gemmi.make_structure_from_block(block)
    except (RuntimeError, ValueError) as exc:
        raise StructureError("invalid_atom_site", f"atom records do not make a structure: {exc}") from exc


def _parse_pdb(text: str) -> gemmi.Structure:
    try:
        return gemmi.read_pdb_string(text)
    except (RuntimeError, ValueError) as first_error:
        # Pre-remediation files keep the entry id and a serial in columns 73-80, where gemmi reads the
        # element and charge; cutting lines to 72 columns reads them as the PDB format then defined them.
        try:
            return gemmi.read_pdb_string(text, max_line_length=72)
        except (RuntimeError, ValueError):
            raise StructureError("pdb_syntax", f"PDB records do not parse: {first_error}") from first_error


@lru_cache(maxsize=4096)
def residue_letter(name: str) -> tuple[str, bool]:
    """(one-letter code(s), is standard) of a residue of a protein chain: the CCD's code
    (``ccd.peptide_one_letter_codes``; several letters for a chromophore), else gemmi's table for a name
    the bundled CCD lacks, else X. "Standard" is one of the 20 amino acids (or U, O) by name."""
    info = gemmi.find_tabulated_residue(name)
    standard = info is not None and info.is_amino_acid() and info.is_standard()
    letters = peptide_one_letter_codes().get(name)
    if letters is None and info is not None and info.is_amino_acid():
        letters = info.one_letter_code.upper()
    if not letters or not _RESIDUES.issuperset(letters):
        return "X", False
    return letters, standard and letters != "X"


def chain_label(name: str) -> str:
    """Chain ids as written in sample ids; pre-1995 PDB files may leave the chain blank."""
    return name or "_"


def residue_id(chain_name: str, seqid: gemmi.SeqId) -> str:
    return f"{chain_label(chain_name)}:{seqid.num}{seqid.icode.strip()}"


def conformer_mask(altlocs: np.ndarray, occupancy: np.ndarray, residue_of_atom: np.ndarray) -> np.ndarray:
    """Atoms to keep: those without altloc, and per residue those of its highest-mean-occupancy altloc
    (ties: the first altloc id). Vectorized over the whole model."""
    alternate = altlocs != 0
    if not alternate.any():
        return np.ones(len(altlocs), dtype=bool)
    residue, altloc = residue_of_atom[alternate], altlocs[alternate].astype(np.int64) & 0xFF
    keys, inverse = np.unique(residue * 256 + altloc, return_inverse=True)
    means = np.bincount(inverse, weights=occupancy[alternate]) / np.bincount(inverse)
    key_residue, key_altloc = keys // 256, keys % 256
    order = np.lexsort((key_altloc, -means, key_residue))  # per residue: best mean first, then lowest id
    first = order[np.r_[True, key_residue[order][1:] != key_residue[order][:-1]]]
    chosen = np.zeros(int(residue_of_atom.max()) + 1, dtype=np.int64)
    chosen[key_residue[first]] = key_altloc[first]
    keep = np.ones(len(altlocs), dtype=bool)
    keep[alternate] = altloc == chosen[residue]
    return keep


def resolve_microheterogeneity(structure: gemmi.Structure) -> None:
    """Where one position holds several residues (e.g. SER and PRO as altlocs), keep the residue of
    the highest-mean-occupancy conformer. Rare, so a plain loop over the few atoms involved."""
    for chain in structure[0]:
        for group in reversed(list(_position_groups(chain))):  # back to front: deletions keep indices valid
            if len(group) > 1:
                keep = group[_best_residue([chain[i] for i in group])]
                for i in reversed(group):
                    if i != keep:
                        del chain[i]


def _position_groups(chain: gemmi.Chain) -> Iterator[list[int]]:
    """Runs of residues sharing a sequence id, as index lists."""
    group: list[int] = []
    previous = None
    for i, residue in enumerate(chain):
        key = (residue.seqid.num, residue.seqid.icode)
        if group and key != previous:
            yield group
            group = []
        group.append(i)
        previous = key
    if group:
        yield group


def _best_residue(residues: list[gemmi.Residue]) -> int:
    best: tuple[float, str, int] | None = None
    for index, residue in enumerate(residues):
        occupancy: dict[str, list[float]] = {}
        for atom in residue:
            occupancy.setdefault(atom.altloc, []).append(atom.occ)
        for altloc, values in occupancy.items():
            candidate = (-sum(values) / len(values), altloc, index)
            best = candidate if best is None or candidate < best else best
    return best[2] if best else 0


def load_entry(text: str, fallback_id: str, model_index: int = 0) -> Entry:
    """Parse and clean one entry (see the module docstring); ``fallback_id`` names id-less files.

    ``model_index`` picks the model by its place in the file (0: the first, as the PDB source reads every
    entry); a SAbDab row names the model its chains were annotated in (its ``model`` column)."""
    structure, file_format = parse_structure(text)
    if len(structure) == 0 or structure[0].count_atom_sites() == 0:
        raise StructureError("no_atoms", "no atom records: not a macromolecular structure")
    if not 0 <= model_index < len(structure):
        raise StructureError("model_not_in_structure",
                             f"model {model_index} asked for, the entry has {len(structure)} model(s) (0-based)")
    if model_index:
        del structure[:model_index]
    model_number = structure[0].num
    del structure[1:]
    structure.setup_entities()
    if file_format == "pdb":
        structure.assign_label_seq_id(False)  # aligns modelled residues to SEQRES
    structure.remove_waters()
    resolve_microheterogeneity(structure)
    info = dict(structure.info)
    return _EntryBuilder(structure).build(
        # gemmi puts an mmCIF's _entry.id and a legacy file's HEADER idCode in info["_entry.id"]. A block name
        # is no id (``data_s``), so without either the file name decides (see ``pipeline.sources.pdb``).
        entry_id=(info.get("_entry.id") or fallback_id).upper(),
        file_format=file_format,
        method=info.get("_exptl.method"),
        resolution=structure.resolution or None,
        deposition_year=_year(info.get("_pdbx_database_status.recvd_initial_deposition_date")),
        model_number=model_number,
    )


def _year(date: str | None) -> int | None:
    return int(date[:4]) if date and date[:4].isdigit() else None


class _EntryBuilder:
    """One pass over the residues for sequences and ligands; atoms come from gemmi's flat (numpy) view,
    filtered there for hydrogens and altlocs, so no Python loop touches individual atoms."""

    def __init__(self, structure: gemmi.Structure) -> None:
        self.structure = structure
        self.entities = {sub: entity for entity in structure.entities for sub in entity.subchains}
        self.chains: list[Chain] = []
        self.other_polymers: list[str] = []
        self.ligands: list[tuple[int, ...]] = []  # residue rows of each ligand candidate
        self.branched: dict[tuple[str, str], list[int]] = {}  # (chain, subchain) -> rows of one branched instance
        self.residue_ids: list[str] = []
        self.residue_chain: list[int] = []
        self.residue_position: list[int] = []
        self.sizes: list[int] = []
        self.residue_names: list[str] = []
        self.residue_branched: list[bool] = []
        self.polymer_keys: set[str] = set()  # residue ids of polymer residues

    def build(self, **fields) -> Entry:
        for chain in self.structure[0]:
            self._add_chain(chain)
        flat = gemmi.FlatStructure(self.structure)
        sizes = np.asarray(self.sizes, dtype=np.int64)
        if len(flat) != sizes.sum():  # the flat view walks chains/residues/atoms in this same order
            raise RuntimeError(f"gemmi flat view has {len(flat)} atoms, residues hold {sizes.sum()}")
        residue_of_atom = np.repeat(np.arange(len(sizes)), sizes)
        keep = conformer_mask(flat.altlocs, flat.occ, residue_of_atom) if len(sizes) else np.zeros(0, bool)
        heavy = keep & (flat.elements != 1)  # gemmi gives H and D atomic number 1
        atom_residue = residue_of_atom[heavy]
        heavy_sizes = np.bincount(atom_residue, minlength=len(sizes))
        residue_chain = np.asarray(self.residue_chain, dtype=np.int64)
        protein_sizes = heavy_sizes[residue_chain >= 0]
        starts = np.concatenate([[0], np.cumsum(sizes)])
        return Entry(
            chains=self.chains,
            other_polymers=self.other_polymers,
            ligands=[self._ligand(flat, keep, starts, heavy_sizes, rows) for rows in self._ligand_rows()],
            residue_ids=self.residue_ids,
            residue_chain=residue_chain,
            residue_position=np.asarray(self.residue_position, dtype=np.int64),
            atom_residue=atom_residue,
            atom_positions=np.asarray(flat.pos, dtype=np.float64)[heavy],
            ca_only=bool(len(protein_sizes)) and float(np.mean(protein_sizes <= 1)) > 0.5,
            **fields,
        )

    def _add_chain(self, chain: gemmi.Chain) -> None:
        protein: list[tuple[int, gemmi.Residue]] = []
        polymer_type = None
        for residue in chain:
            row = len(self.residue_ids)
            self.residue_ids.append(residue_id(chain.name, residue.seqid))
            self.residue_chain.append(-1)
            self.residue_position.append(-1)
            self.sizes.append(len(residue))
            self.residue_names.append(residue.name)
            self.residue_branched.append(residue.entity_type == gemmi.EntityType.Branched)
            kind = residue.entity_type
            if kind == gemmi.EntityType.Polymer:
                self.polymer_keys.add(self.residue_ids[row])
                polymer_type = polymer_type or self._polymer_type(chain, residue)
                if polymer_type == gemmi.PolymerType.PeptideL:
                    protein.append((row, residue))
            elif kind == gemmi.EntityType.NonPolymer:
                self.ligands.append((row,))
            elif kind == gemmi.EntityType.Branched:
                self.branched.setdefault((chain.name, residue.subchain), []).append(row)
        if polymer_type is not None and polymer_type != gemmi.PolymerType.PeptideL:
            self.other_polymers.append(POLYMER_TYPE_NAMES.get(polymer_type, str(polymer_type).split(".")[-1]))
        if protein:
            self._add_protein_chain(chain_label(chain.name), protein, self.entities.get(protein[0][1].subchain))

    def _polymer_type(self, chain: gemmi.Chain, residue: gemmi.Residue) -> gemmi.PolymerType:
        entity = self.entities.get(residue.subchain)
        if entity is not None and entity.polymer_type != gemmi.PolymerType.Unknown:
            return entity.polymer_type
        return chain.get_polymer().check_polymer_type()

    def _add_protein_chain(self, name: str, residues: list[tuple[int, gemmi.Residue]], entity) -> None:
        modelled = [(r.name, r.label_seq) for _, r in residues]
        names, positions, source = _deposited_sequence(entity, modelled)
        letters = [residue_letter(n) for n in names]
        # A chromophore has several letters (CRO -> TYG): a residue sits at the offset of its first letter.
        offsets = np.concatenate([[0], np.cumsum([len(code) for code, _ in letters])]).tolist()
        chain_index = len(self.chains)
        for (row, _), position in zip(residues, positions, strict=True):
            self.residue_chain[row] = chain_index
            self.residue_position[row] = offsets[position]
        self.chains.append(
            Chain(
                chain_id=name,
                entity_id=entity.name if entity is not None else "",
                sequence="".join(letter for letter, _ in letters),
                sequence_source=source,
                nonstandard=sum(not standard for _, standard in letters),
                residue_smiles=tuple(
                    (offsets[i], nonstandard_residues()[name][1])
                    for i, (name, (_, standard)) in enumerate(zip(names, letters, strict=True))
                    if not standard and name in nonstandard_residues()
                ),
            )
        )

    def _ligand_rows(self) -> list[tuple[int, ...]]:
        """Non-polymer residues one by one, each branched instance whole, in file order. Non-polymer sugars
        joined by covalent links (a legacy PDB file's LINK records: the format has no branched entities)
        are one ligand too, as their branched entity would be in mmCIF."""
        sugars = {self.residue_ids[r]: r for (r,) in self.ligands if _is_sugar(self.residue_names[r])}
        root = {r: r for r in sugars.values()}

        def find(r: int) -> int:
            while root[r] != r:
                root[r] = root[root[r]]
                r = root[r]
            return r

        for one, two in self._covalent_pairs():
            if one in sugars and two in sugars:
                root[find(sugars[one])] = find(sugars[two])
        groups: dict[int, list[int]] = {}
        for r in sugars.values():
            groups.setdefault(find(r), []).append(r)
        linked = [tuple(sorted(rows)) for rows in groups.values() if len(rows) > 1]
        grouped = {r for rows in linked for r in rows}
        singles = [rows for rows in self.ligands if rows[0] not in grouped]
        return sorted(singles + linked + [tuple(rows) for rows in self.branched.values()])

    def _covalent_pairs(self) -> list[tuple[str, str]]:
        """Residue ids of the two partners of each covalent link (struct_conn / LINK)."""
        return [
            tuple(residue_id(p.chain_name, p.res_id.seqid) for p in (c.partner1, c.partner2))
            for c in self.structure.connections
            if c.type == gemmi.ConnectionType.Covale
        ]

    def _ligand(self, flat, keep, starts, heavy_sizes, rows: tuple[int, ...]) -> Ligand:
        atoms = np.concatenate([np.arange(starts[r], starts[r + 1])[keep[starts[r] : starts[r + 1]]] for r in rows])
        ids = [self.residue_ids[r] for r in rows]
        names = [self.residue_names[r] for r in rows]
        covalent = any(i in self._covalently_linked for i in ids)
        branched = self.residue_branched[rows[0]] or len(rows) > 1
        sugar = branched or _is_sugar(names[0])
        return Ligand(
            ccd_id="-".join(names),
            chain_id=ids[0].split(":")[0],
            residue_id=ids[0],
            row=rows[0],
            branched=branched,
            glycan=sugar and covalent,
            covalent=covalent,
            heavy_atoms=int(heavy_sizes[list(rows)].sum()),
            elements=tuple(e.decode() for e in flat.element_names[atoms]),
            positions=np.asarray(flat.pos, dtype=np.float64)[atoms],
            formal_charge=int(flat.charge[atoms].sum()),
            rows=tuple(rows),
            members=tuple(names) if branched else (),
            links=self._links(ids) if branched else (),
        )

    def _links(self, ids: list[str]) -> tuple[tuple[int, str, int, str], ...]:
        """Covalent links (struct_conn) between residues of one branched instance, as member indices."""
        member = {residue: i for i, residue in enumerate(ids)}
        links = []
        for connection in self.structure.connections:
            if connection.type != gemmi.ConnectionType.Covale:
                continue
            one, two = connection.partner1, connection.partner2
            first = member.get(residue_id(one.chain_name, one.res_id.seqid))
            second = member.get(residue_id(two.chain_name, two.res_id.seqid))
            if first is not None and second is not None and first != second:
                links.append((first, one.atom_name, second, two.atom_name))
        return tuple(sorted(links))

    @cached_property
    def _covalently_linked(self) -> frozenset[str]:
        """Residue ids with a covalent bond (struct_conn / LINK) to a polymer residue."""
        linked: set[str] = set()
        for connection in self.structure.connections:
            if connection.type != gemmi.ConnectionType.Covale:
                continue
            one, two = connection.partner1, connection.partner2
            for this, other in ((one, two), (two, one)):
                if residue_id(other.chain_name, other.res_id.seqid) in self.polymer_keys:
                    linked.add(residue_id(this.chain_name, this.res_id.seqid))
        return frozenset(linked)


def _is_sugar(name: str) -> bool:
    info = gemmi.find_tabulated_residue(name)
    return info is not None and info.kind in (gemmi.ResidueKind.PYR, gemmi.ResidueKind.KET)


def _deposited_sequence(entity, modelled: list[tuple[str, int | None]]) -> tuple[list[str], list[int], str]:
    """Residue names of the chain's sequence, and each modelled residue's position in it.

    ``modelled`` holds (residue name, label_seq) per modelled residue. The deposited sequence is used
    when every modelled residue sits on it, once, under its own name (or one of its alternatives).
    """
    full = [m.split(",") for m in entity.full_sequence] if entity is not None else []
    positions = [seq - 1 if seq is not None else -1 for _, seq in modelled]
    placed = bool(full) and all(0 <= seq - 1 < len(full) and name in full[seq - 1] for name, seq in modelled if seq)
    placed = placed and -1 not in positions
    if placed and len(set(positions)) == len(positions):
        return [alternatives[0] for alternatives in full], positions, "deposited"
    return [name for name, _ in modelled], list(range(len(modelled))), "modelled"

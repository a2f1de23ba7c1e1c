"""Build ``grammar/data/nonstandard_residues.tsv``: the SMILES of every non-standard amino acid of the CCD.

SMILES-expanded pockets write each pocket residue as its free amino acid's SMILES. For the 20 standard
residues (and U, O) the grammar has its own table; for a modified residue (MSE, SEP, DAL, ...) the text
must carry the residue that is there, not its parent, so selenomethionine keeps its Se and a D-residue its
D stereo. This module makes that table once from the CCD (biotite's bundled copy, the same conversion as
ligands: ``ccd.ComponentDictionary``); the grammar reads it to parse such SMILES back to the residue's
one-letter code, and the PDB source reads it to write them.

Rows: ``ccd_id<TAB>letters<TAB>smiles`` for peptide-linking components whose CCD code is letters of the
grammar's alphabet (X included: a residue with no parent code is X with its real SMILES). A chromophore has
several letters (CRO TYG: the tripeptide it formed from); its residue sits on its first letter, and a
SMILES-expanded pocket writes its SMILES once in place of all its letters. Left out, so such residues are
written as their letter's standard SMILES as before: components whose SMILES fails the
grammar vocabulary or are not one molecule (``is_one_molecule``), SMILES equal to a standard residue's, and
SMILES the CCD gives to components of different letters (kept for the letter of a released component before
an obsolete one, then of the oldest: pyroglutamate is PCA's Q, not the obsolete 5HP's E), so a SMILES reads
back as one letter.

Run: ``python -m pipeline.sources.residue_table`` (a few minutes; the file is committed).
"""

from __future__ import annotations

import sys
from pathlib import Path

from grammar.protein import NONSTANDARD_RESIDUES_PATH, RESIDUE_ALPHABET, residue_smiles_table
from pipeline.sources.ccd import ComponentDictionary, ComponentError, peptide_one_letter_codes


def is_one_molecule(smiles: str) -> bool:
    """Some CCD peptide entries hold a fragment, not a residue (CYA: the two O atoms of a cysteine
    sulfinate, "O.O"): a residue's SMILES is one molecule."""
    return "." not in smiles


def residue_rows() -> list[tuple[str, str, str]]:
    """(ccd_id, letter, smiles) of the table, sorted by ccd_id."""
    dictionary = ComponentDictionary()
    standard = set(residue_smiles_table().values())
    alphabet = set(RESIDUE_ALPHABET)
    found: list[tuple[str, str, str]] = []
    for ccd_id, letters in sorted(peptide_one_letter_codes().items()):
        if not set(letters) <= alphabet:
            continue
        try:
            component = dictionary.lookup(ccd_id)
        except ComponentError:
            continue
        if component is not None and component.smiles not in standard and is_one_molecule(component.smiles):
            found.append((ccd_id, letters, component.smiles))
    rank = _preference()
    chosen: dict[str, tuple[bool, str, str]] = {}  # SMILES -> (obsolete, initial date, letter) of the best
    for ccd_id, letter, smiles in found:
        candidate = (*rank.get(ccd_id, (True, "9999")), letter)
        chosen[smiles] = min(chosen.get(smiles, candidate), candidate)
    return [(ccd_id, letter, smiles) for ccd_id, letter, smiles in found if chosen[smiles][2] == letter]


def _preference() -> dict[str, tuple[bool, str]]:
    """CCD id -> (obsolete, initial date): released components first, then the oldest."""
    from biotite.structure.info.ccd import get_ccd

    table = get_ccd()["chem_comp"]
    ids, status, dates = (table[c].as_array().tolist() for c in ("id", "pdbx_release_status", "pdbx_initial_date"))
    return {i: (s != "REL", d) for i, s, d in zip(ids, status, dates, strict=True)}


def write_table(path: Path = NONSTANDARD_RESIDUES_PATH) -> int:
    import biotite

    rows = residue_rows()
    header = (
        f"# Non-standard amino acids of the wwPDB CCD (biotite {biotite.__version__} bundled copy; CCD data CC0),\n"
        "# made by `python -m pipeline.sources.residue_table` (see its docstring). ccd_id, one-letter code, SMILES.\n"
    )
    path.write_text(header + "".join(f"{c}\t{letter}\t{smiles}\n" for c, letter, smiles in rows))
    return len(rows)


if __name__ == "__main__":
    print(f"{write_table()} residues -> {NONSTANDARD_RESIDUES_PATH}", file=sys.stderr)

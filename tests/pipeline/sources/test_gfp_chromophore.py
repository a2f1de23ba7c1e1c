"""GFP's chromophore through the PDB source, on the real entry 1EMA (Aequorea GFP S65T; its chromophore CRO 66
formed from Thr65-Tyr66-Gly67 replaces those three residues; its six methionines are selenomethionine, four of
them modelled).

References, none of them the source's code: the CCD's own ``_chem_comp`` row (biotite's bundled CCD),
Biopython's SEQRES parser (``pdb-seqres``), the entry's own SEQRES / FORMUL / HETNAM records read as text,
UniProtKB P42212 (GFP_AEQVI) and RDKit (formula, CIP labels).
"""

from __future__ import annotations

import gzip
import io
import re
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
from Bio import SeqIO
from Bio.Data.IUPACData import protein_letters_3to1
from rdkit import Chem
from rdkit.Chem import rdCIPLabeler, rdMolDescriptors

from grammar.errors import InvalidResidue
from grammar.formats import FORMATS
from grammar.pocket import BindingSite, Pocket
from grammar.protein import Chain, Protein, nonstandard_residues
from pipeline.sources.base import convert_file
from pipeline.sources.pdb import PdbConfig, PdbSource
from pipeline.sources.pdb_structure import load_entry, residue_letter
from pipeline.sources.pockets import PocketSearch, binding_site

ENTRY = Path(__file__).resolve().parents[2] / "data" / "pdb" / "chemistry" / "1ema.pdb.gz"

# UniProtKB P42212 (GFP_AEQVI), canonical sequence, 238 aa (wild type: Ser65, Gln80).
P42212 = (
    "MSKGEELFTGVVPILVELDGDVNGHKFSVSGEGEGDATYGKLTLKFICTTGKLPVPWPTL"
    "VTTFSYGVQCFSRYPDHMKQHDFFKSAMPEGYVQERTIFFKDDGNYKTRAEVKFEGDTLV"
    "NRIELKGIDFKEDGNILGHKLEYNYNSHNVYIMADKQKNGIKVNFKIRHNIEDGSVQLAD"
    "HYQQNTPIGDGPVLLPDNHYLSTQSALSKDPNEKRDHMVLLEFVTAAGITHGMDELYK"
)


@cache
def entry_text() -> str:
    return gzip.decompress(ENTRY.read_bytes()).decode()


def records(name: str) -> list[str]:
    return [line for line in entry_text().splitlines() if line[:6].rstrip() == name]


@cache
def ccd_row(ccd_id: str) -> dict[str, str]:
    """The CCD's ``_chem_comp`` row, read straight from biotite's bundled CCD."""
    from biotite.structure.info.ccd import get_ccd

    table = get_ccd()["chem_comp"]
    row = table["id"].as_array().tolist().index(ccd_id)
    return {key: str(table[key].as_array()[row]) for key in ("one_letter_code", "mon_nstd_parent_comp_id", "formula")}


def formula_counts(formula: str) -> Counter:
    counts: Counter = Counter()
    for element, n in re.findall(r"([A-Z][a-z]?)(\d*)", formula.replace(" ", "")):
        counts[element] += int(n or 1)
    return counts


def expected_sequence() -> str:
    """Biopython's one-letter SEQRES of chain A (X for the chromophore, which it has no code for), with the
    chromophore's CCD code in place of that X."""
    [record] = SeqIO.parse(io.StringIO(entry_text()), "pdb-seqres")
    names = [name for line in records("SEQRES") if line[11] == "A" for name in line[19:].split()]
    [chromophore] = [i for i, name in enumerate(names) if name == "CRO"]
    seqres = str(record.seq)
    assert len(seqres) == len(names) == 236 and seqres[chromophore] == "X"
    return seqres[:chromophore] + ccd_row("CRO")["one_letter_code"] + seqres[chromophore + 1:]


def test_the_chromophore_letters_are_the_ccd_code() -> None:
    """CRO's ``one_letter_code`` in the CCD is TYG, its parents THR, TYR, GLY; the source writes those letters
    and counts CRO as non-standard."""
    row = ccd_row("CRO")
    assert row["one_letter_code"] == "TYG"
    assert [p.strip() for p in row["mon_nstd_parent_comp_id"].split(",")] == ["THR", "TYR", "GLY"]
    assert residue_letter("CRO") == ("TYG", False)


def test_the_chain_sequence_is_the_seqres_with_the_chromophore_tripeptide() -> None:
    """Every record of chain A is accounted for: the protein sample is the deposited SEQRES (236 residues,
    selenomethionines M as Biopython reads them) with CRO as the three letters it formed from (238)."""
    expected = expected_sequence()
    done = convert_file(PdbSource(PdbConfig()), str(ENTRY))
    assert not done.rejects
    [protein] = [s for s in done.samples if s.task == "protein"]
    assert protein.text == f"<ProteinS>{expected}<ProteinE>" and len(expected) == 238
    [chain] = load_entry(entry_text(), "1ema").chains
    standard = {name.upper() for name in protein_letters_3to1}
    seqres_names = [name for line in records("SEQRES") for name in line[19:].split()]
    assert chain.nonstandard == sum(name not in standard for name in seqres_names) == 7  # CRO + 6 MSE


def test_wild_type_positions_equal_uniprot() -> None:
    """Against UniProt P42212, position by position (1EMA numbers its residues as UniProt does): the only
    differences are the entry's mutation S65T (Heim et al., Nature 1995, the entry's REMARK 1 reference;
    REMARK 999 names the chromophore's Thr 65) and R80, the Q80R difference of the pGFP10.1 cDNA clone
    (Chalfie et al., Science 1994) that the expression constructs of that time carry."""
    sequence = expected_sequence()
    assert len(sequence) == len(P42212)
    differences = {i + 1: (u, s) for i, (u, s) in enumerate(zip(P42212, sequence, strict=True)) if u != s}
    assert differences == {65: ("S", "T"), 80: ("Q", "R")}
    assert sequence[64:67] == "TYG" and P42212[64:67] == "SYG"


def test_expanded_pocket_writes_the_chromophores_own_smiles() -> None:
    """The residues around the chromophore (6 Å, the source's pocket search and writer): the SMILES-expanded
    texts write CRO's own SMILES once for its three letters, not threonine's. RDKit's formula of it is the
    CCD's and the entry's FORMUL record's (C15 H17 N3 O5), its two stereocentres carry the CIP labels of the
    CCD / HETNAM name ((1R,2R)-1-amino-2-hydroxypropyl), and every text reads back to the same site."""
    formul = next(line for line in records("FORMUL") if line[12:15] == "CRO")[19:].strip()
    assert formula_counts(formul) == formula_counts(ccd_row("CRO")["formula"])
    assert "(1R,2R)-1-AMINO-2-HYDROXYPROPYL" in "".join(line[15:].strip() for line in records("HETNAM")
                                                         if line[11:14] == "CRO")
    entry = load_entry(entry_text(), "1ema")
    [cro] = [row for row, rid in enumerate(entry.residue_ids) if rid == "A:66"]
    rows = PocketSearch(entry, [0]).residues_near([cro], 6.0)
    site = binding_site(entry, rows, 6.0)
    position = int(entry.residue_position[cro])
    assert entry.chains[0].sequence[position:position + 3] == "TYG"
    assert (0, position) in site.pocket.residues

    threonine = Chem.MolToSmiles(Chem.MolFromSequence("T"))
    one_letter = FORMATS["pocket"].write(site)
    assert "<PocketS>T<PocketE>YG" in one_letter
    for task in ("pocket_smiles", "trans"):
        form = FORMATS[task]
        text = form.write(site)
        assert form.write(form.parse(text)) == text and form.parse(text) == site
        expanded = re.findall(r"<PocketS>(.*?)<PocketE>", text.split("<Trans>")[-1])
        formulas = [formula_counts(rdMolDescriptors.CalcMolFormula(Chem.MolFromSmiles(s))) for s in expanded]
        [smiles] = [s for s, f in zip(expanded, formulas, strict=True) if f == formula_counts(formul)]
        assert smiles != threonine and Chem.MolToSmiles(Chem.MolFromSmiles(smiles)) != threonine
        mol = Chem.MolFromSmiles(smiles)
        rdCIPLabeler.AssignCIPLabels(mol)
        labels = sorted(a.GetProp("_CIPCode") for a in mol.GetAtoms() if a.HasProp("_CIPCode"))
        assert labels == ["R", "R"]
        # One SMILES per pocket residue: the chromophore's letters are not written again after it.
        assert len(expanded) == len(site.pocket.residues)


def test_a_pocket_mark_inside_a_written_chromophore_is_an_error() -> None:
    """The chromophore's SMILES stands for its three letters, so a mark on its second letter cannot be written;
    the writer says so instead of dropping the mark."""
    chain = Chain("FTYGV", residue_smiles=((1, nonstandard_residues()["CRO"][1]),))
    site = BindingSite(Protein((chain,)), Pocket(((0, 1), (0, 2))))
    with pytest.raises(InvalidResidue, match="inside the chromophore written at 1"):
        FORMATS["pocket_smiles"].write(site)

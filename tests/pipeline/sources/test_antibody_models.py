"""SAbDab rows name the model their chains were annotated in (the ``model`` column, 0-based in file order):
the antibody source reads that model, not always the first.

The structure is the real 1KB5 entry (tests/data/antibody/structures) made into a two-model file here: model 2
is model 1 with the antigen chains (A, B: the T-cell receptor) moved 200 Å away, so the models differ exactly
in whether the antibody touches its antigen. The reference is Biopython's ``NeighborSearch`` over each model
of the written file, parsed by Biopython.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import gemmi
from Bio.PDB import NeighborSearch, PDBParser

from pipeline.sources import make_source
from pipeline.sources.base import convert_file

DATA = Path(__file__).resolve().parents[2] / "data" / "antibody"
STRUCTURE = DATA / "structures" / "1kb5.pdb.gz"
ANTIGEN, ANTIBODY, SHIFT, CUTOFF = ("A", "B"), ("H", "L"), 200.0, 6.0


def two_model_file(directory: Path) -> Path:
    structure = gemmi.read_pdb_string(gzip.decompress(STRUCTURE.read_bytes()).decode())
    del structure[1:]
    structure.add_model(structure[0])
    structure[1].num = 2
    for chain in structure[1]:
        if chain.name in ANTIGEN:
            for residue in chain:
                for atom in residue:
                    atom.pos = gemmi.Position(atom.pos.x + SHIFT, atom.pos.y, atom.pos.z)
    path = directory / "1kb5.pdb"
    structure.write_pdb(str(path))
    return path


def epitope(path: Path, model_index: int) -> set[str]:
    """Antigen residue ids within the cutoff of the antibody chains, by Biopython on one model."""
    model = list(PDBParser(QUIET=True).get_structure("1kb5", str(path)))[model_index]

    def atoms(chains):
        return [a for c in chains for r in model[c] if r.id[0] == " " for a in r if a.element not in ("H", "D")]

    search = NeighborSearch(atoms(ANTIGEN))
    return {f"{a.get_parent().get_parent().id}:{a.get_parent().id[1]}{a.get_parent().id[2].strip()}"
            for atom in atoms(ANTIBODY) for a in search.search(atom.coord, CUTOFF)}


def test_each_row_reads_the_model_it_names(tmp_path: Path) -> None:
    path = two_model_file(tmp_path)
    header, first = (DATA / "sabdab_handmade_rows.tsv").read_text().splitlines()[:2]
    columns = header.split("\t")
    row = dict(zip(columns, first.split("\t"), strict=True))
    assert row["pdb"] == "1kb5" and row["Hchain"] == "H" and row["Lchain"] == "L"
    lines = [header] + ["\t".join((row | {"model": model})[c] for c in columns) for model in ("0", "1", "2")]
    tsv = tmp_path / "rows.tsv"
    tsv.write_text("\n".join(lines) + "\n")

    done = convert_file(make_source("antibody", {"structures_path": str(tmp_path)}), str(tsv))
    pairs = {s.metadata["sabdab_model"]: s for s in done.samples if s.task == "antibody_antigen"}
    antibodies = {s.metadata["sabdab_model"]: s for s in done.samples if s.task == "antibody"}
    rejects = sorted((r.locator, r.reason_code) for r in done.rejects)

    assert epitope(path, 0) and not epitope(path, 1)
    assert set(pairs["0"].metadata["epitope_residue_ids"]) == epitope(path, 0)
    assert pairs["0"].metadata["model"] == 1 and antibodies["1"].metadata["model"] == 2
    assert "1" not in pairs  # model 2 (index 1): the antibody touches no antigen atom
    assert rejects == [("line 3 1kb5 antibody_antigen", "no_epitope"), ("line 4 1kb5", "model_not_in_structure")]
    assert antibodies["0"].text == antibodies["1"].text  # the same antibody in both models

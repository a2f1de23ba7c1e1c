"""A small real Megatron blend built from the repository's fixture files.

Molecules are ChEMBL SMILES (tests/data/chembl), proteins are the peptide chains of the mmCIF files
(tests/data/pdb/mmcif, read with gemmi); both are written in the shared grammar, tokenized with the
built-in grammar tokenizer and stored with megatron-core's ``IndexedDatasetBuilder`` (EOD after each
document), with the blend JSON in the dataset stage's format next to them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
TRAIN_WEIGHTS = {"molecule": 0.6, "protein": 0.4}


def molecule_texts() -> list[str]:
    from grammar.molecule import Molecule, write_molecule

    with (DATA / "chembl" / "chembl_30_chemreps_100.txt").open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [write_molecule(Molecule.from_smiles(row["canonical_smiles"], row["chembl_id"])) for row in rows]


def protein_texts() -> list[str]:
    import gemmi

    from grammar.protein import Protein, write_protein

    texts = []
    for path in sorted((DATA / "pdb" / "mmcif").glob("*.cif")):
        structure = gemmi.read_structure(str(path))
        structure.setup_entities()
        for chain in structure[0]:
            polymer = chain.get_polymer()
            if polymer.check_polymer_type() == gemmi.PolymerType.PeptideL:
                sequence = gemmi.one_letter_code([residue.name for residue in polymer])
                texts.append(write_protein(Protein.from_sequences(sequence, source_id=path.stem)))
    return texts


def split_of(index: int) -> str:
    return {0: "valid", 1: "test"}.get(index % 5, "train")


def write_blend(out: Path) -> Path:
    """Tokenize the fixture records into train/valid/test prefixes per domain; returns the blend path."""
    import numpy as np
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    from grammar.tokenizer import default_tokenizer

    tokenizer = default_tokenizer()
    tokenizer.save(out / "tokenizer")
    domains = {"molecule": molecule_texts(), "protein": protein_texts()}
    splits: dict[str, dict[str, list]] = {}
    for domain, texts in domains.items():
        by_split: dict[str, list[list[int]]] = {}
        for i, ids in enumerate(tokenizer.encode_batch(texts)):
            by_split.setdefault(split_of(i), []).append([*ids, tokenizer.eos_id])
        for split, documents in by_split.items():
            prefix = Path("megatron") / split / domain
            (out / prefix).parent.mkdir(parents=True, exist_ok=True)
            builder = IndexedDatasetBuilder(f"{out / prefix}.bin", dtype=np.uint16)
            for document in documents:
                builder.add_item(torch.tensor(document, dtype=torch.int64))
                builder.end_document()
            builder.finalize(f"{out / prefix}.idx")
            entry = splits.setdefault(split, {"prefixes": [], "weights": [], "domains": []})
            entry["prefixes"].append(str(prefix))
            entry["weights"].append(TRAIN_WEIGHTS[domain])
            entry["domains"].append(domain)
    blend = {
        "format": "logos-megatron-blend/1",
        "tokenizer": {"path": "tokenizer", "content_hash": tokenizer.content_hash,
                      "vocab_size": tokenizer.vocab_size, "eod_id": tokenizer.eos_id, "pad_id": tokenizer.pad_id},
        "dtype": "uint16",
        "splits": splits,
        "dataset": {"name": "fixture", "version": "test-1"},
    }
    path = out / "blend.json"
    path.write_text(json.dumps(blend, indent=1))
    return path


@pytest.fixture(scope="session")
def blend_path(tmp_path_factory) -> Path:
    return write_blend(tmp_path_factory.mktemp("blend"))

"""Helpers for the training tests: a small real Megatron blend built from the repository's fixtures,
run configurations, metrics and process inspection.

The blend:

Molecules are ChEMBL SMILES (tests/data/chembl), proteins are the peptide chains of the mmCIF files
(tests/data/pdb/mmcif, read with gemmi); both are written in the shared grammar, tokenized with the
built-in grammar tokenizer and stored with megatron-core's ``IndexedDatasetBuilder`` (each document
``<bos> ids <eos>``, as the export writes it), with the blend JSON in the dataset stage's format next to them.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def write_blend(out: Path, tokenizer: Any = None) -> Path:
    """Tokenize the fixture records into train/valid/test prefixes per domain with ``tokenizer`` (default:
    the native grammar tokenizer; any kind); returns the blend path."""
    import numpy as np
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    from grammar.tokenizer import default_tokenizer

    tokenizer = tokenizer or default_tokenizer()
    tokenizer.save(out / "tokenizer")
    domains = {"molecule": molecule_texts(), "protein": protein_texts()}
    splits: dict[str, dict[str, list]] = {}
    for domain, texts in domains.items():
        by_split: dict[str, list[list[int]]] = {}
        for i, ids in enumerate(tokenizer.encode_batch(texts)):
            by_split.setdefault(split_of(i), []).append([*tokenizer.prefix_ids, *ids, tokenizer.eod_id])
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
        "tokenizer": {"path": "tokenizer", "kind": tokenizer.kind, "content_hash": tokenizer.content_hash,
                      "vocab_size": tokenizer.vocab_size, "eod_id": tokenizer.eod_id, "pad_id": tokenizer.pad_id,
                      "bos_id": tokenizer.bos_id},
        "dtype": "uint16",
        "splits": splits,
        "dataset": {"name": "fixture", "version": "test-1"},
    }
    path = out / "blend.json"
    path.write_text(json.dumps(blend, indent=1))
    return path


# --- run configurations -----------------------------------------------------------------------------

def base_config(run_dir: Path, blend: Path) -> dict[str, Any]:
    """The tiny model on the fixture blend: 16 steps of 4 sequences of 64 tokens, checkpoints every 4."""
    return {
        "run_dir": str(run_dir),
        "train_steps": 16,
        "seed": 1234,
        "model": {"preset": "tiny"},
        "data": {"blend": str(blend), "seq_length": 64, "micro_batch_size": 2, "global_batch_size": 4},
        "optimizer": {"lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 2},
        "checkpoint": {"interval": 4},
        "logging": {"eval_iters": 1},
    }


def make_config(run_dir: Path, blend: Path, *overrides: str):
    from training.config import apply_overrides, config_from_dict

    return config_from_dict(apply_overrides(base_config(run_dir, blend), list(overrides)))


def train_losses(metrics_path: Path) -> list[float]:
    from training.metrics import read_metrics

    return [record["loss"] for record in read_metrics(metrics_path)]


def run_logos(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workflows.cli", *args], capture_output=True, text=True,
                          cwd=REPO, **kwargs)


def processes_of_launch(launcher_pid: int) -> list:
    """Every live process started by the launcher with this pid (ranks, their helpers), found by the
    environment variable the launcher hands down, so orphans reparented elsewhere are found too."""
    import psutil

    from training.rank import LAUNCHER_PID_ENV

    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(LAUNCHER_PID_ENV) == str(launcher_pid) and process.pid != launcher_pid:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return [p for p in found if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

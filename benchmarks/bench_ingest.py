"""Ingest throughput: the full ingest path against the bare library parse, per domain, in the same run;
then 1 vs 2 Ray workers on real SMILES; peak memory of the whole process tree.

    python benchmarks/bench_ingest.py [--molecules 20000] [--ray-rows 200000] [--skip-ray] [--only antibody]
                                      [--cpu-time]

``--cpu-time`` times the per-domain rows by CPU time instead of wall time: this process's (all its threads) plus
that of the child processes it waited for (``os.times``; ANARCI's ``hmmscan`` is one, and most of the antibody
row's work); on a machine shared with other work, wall time also counts the waits for a core.

Floors: molecules and reactions = RDKit parse + canonical SMILES; proteins/complexes = gemmi read of the
entry + the pocket neighbour search (gemmi ``NeighborSearch`` from every ligand heavy atom at the source's
pocket cutoff); materials = pymatgen parse + spglib space group; protein sequences (uniprot) = Biopython ``SeqIO.parse``
of the same FASTA (the bundled 1,100 records repeated 50 times: ~2 us a record, too short to time once), and in the
"protein seq (+Parquet)" row the same parse plus the token ids and a Parquet write of text and ids, the work no
ingest of a sequence can skip (with the shards' column settings, writing the list<int32> ids alone takes ~0.9x
Biopython's parse time); UniProt flat files ("protein seq (flat file)") = ``Bio.SwissProt.parse`` of the bundled
entries repeated; MOFs = pymatgen CIF parse + the building-block decomposition (bare calls); antibodies =
ANARCI's IMGT numbering of the same chains (one batched ``anarci`` call: the bare tool at its cheapest). The
ingest path = source read + convert (grammar objects, validation, dedup keys) + tokenize + Parquet write,
single process (per core). The last lines restate the ratios issue 13 sets targets for (PDB and crystals
>= 0.6x, the default molecule path >= 0.5x), from the rows above. The default molecule path keys molecules by
their canonical SMILES (``pipeline.sources.smiles.MoleculeKey``); the "molecule (floor: keys)" row times it
against bare RDKit doing the work its keys need (parse, canonical SMILES, Murcko scaffold): what is left to the
pipeline itself; "molecule (key=inchikey)" is the ``molecule_key=inchikey`` option against the plain floor.

From a clean clone (no ``../shared``) the molecule rows and the Ray run use the bundled ChEMBL SMILES
(~5.9k), and the output says the input is smaller. Quick check: ``--molecules 2000 --rounds 1 --skip-ray``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import os
import pickle
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import psutil
from inputs import smiles_rows

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests/data"


class PeakRss:
    """Peak resident memory of this process and all its descendants (Ray workers included)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss
            self.peak = max(self.peak, total)
            self._stop.wait(0.2)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


CLOCK = time.perf_counter  # --cpu-time: cpu_time


def cpu_time() -> float:
    """CPU seconds of this process and of its waited-for children (``time.process_time`` misses the latter; the
    process's own share is taken from it, as ``os.times`` counts in 10 ms ticks: a quarter of a 40 ms row)."""
    times = os.times()
    return time.process_time() + times.children_user + times.children_system


def timed(fn: Callable[[], int]) -> tuple[int, float]:
    start = CLOCK()
    count = fn()
    return count, CLOCK() - start


def moses_smiles(rows: int) -> list[str]:
    """MOSES SMILES, or from a clean clone the bundled ones (printed either way, with "smaller input" if so)."""
    return smiles_rows(rows)


_SOURCES: dict[str, object] = {}


def ingest_in_process(source_name: str, files: list[Path], out: Path, options: dict | None = None) -> tuple[int, int]:
    """(items, records) through read -> convert -> tokenize -> Parquet, one process. The source object
    lives across calls, as it does in the engine's converter actors (its caches, e.g. the CCD, stay warm)."""
    from grammar.tokenizer import default_tokenizer
    from pipeline.ingest import convert_chunk, read_file_chunks, read_groups
    from pipeline.shards import part_name
    from pipeline.sources import make_source

    key = f"{source_name}:{sorted((options or {}).items())}"
    if key not in _SOURCES:
        _SOURCES[key] = make_source(source_name, options)
    source = _SOURCES[key]
    tokenizer = default_tokenizer()
    items = records = 0
    for sub in ("records", "rejects"):
        (out / source_name / sub).mkdir(parents=True, exist_ok=True)
    # The engine's own read plan (groups of files, chunks that span them) and chunk step, minus Ray.
    for group in read_groups([str(f) for f in files]):
        batch = {"group_index": [group["group_index"]], "uris": [group["uris"]]}
        for row in read_file_chunks(batch, source_name, options or {}, getattr(source, "chunk_items", 1024)):
            name = part_name(row["group_index"][0], row["chunk_index"][0])
            stats = convert_chunk(source, tokenizer, pickle.loads(row["items"][0]), "python", str(out / source_name),
                                  name)
            items, records = items + stats.items_read, records + stats.records
    return items, records


def domain_rows(tmp: Path, n_molecules: int) -> list[tuple[str, Callable[[], int], Callable[[], tuple[int, int]]]]:
    import gemmi
    from pymatgen.core import Structure
    from pymatgen.io.cif import CifParser
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
    from rdkit import Chem

    from pipeline.sources.pdb import PdbConfig

    smiles = moses_smiles(n_molecules)
    smiles_file = tmp / "molecules.smi"
    smiles_file.write_text("\n".join(smiles) + "\n")
    with open(DATA / "uspto/USPTO_50K_sample.csv") as handle:
        reactions = [row["reactants>reagents>production"] for row in csv.DictReader(handle)]
    pdb_files = sorted((DATA / "pdb/mmcif").glob("*.cif"))
    uniprot_fasta = repeated_fasta(tmp)
    uniprot_flat = repeated_flat_file(tmp)
    mof_cifs = [DATA / f"mp/mof/{name}.cif" for name in ("ABAVIJ_clean", "DALVIY_clean", "ZIF-8-RASPA", "qmof-fef756d")]
    with open(DATA / "mp/mp_20_sample.csv") as handle:
        cifs = [row["cif"] for row in csv.DictReader(handle)]
    structures = sorted((DATA / "mp/structures").glob("*.json"))
    oas_file, oas_chains = oas_unit(tmp)

    def biopython_fasta() -> int:
        from Bio import SeqIO

        return sum(1 for record in SeqIO.parse(uniprot_fasta, "fasta") if str(record.seq))

    def biopython_flat_file() -> int:
        from Bio import SwissProt

        with open(uniprot_flat) as handle:
            return sum(1 for record in SwissProt.parse(handle) if record.sequence)

    def biopython_fasta_ids_parquet() -> int:
        """Bare libraries doing the work no ingest of these records can skip: Biopython's parse, the token ids
        (a numpy lookup of the grammar vocabulary's residue letters) and, per 4,096 records, a zstd Parquet part
        of the text and the ids (pyarrow), with the column settings the shards use. The pipeline's own share is
        what is left: headers and metadata, validation, content ids and dedup keys, the other columns."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq
        from Bio import SeqIO

        from grammar.tokenizer import default_tokenizer

        ids = default_tokenizer().vocab.ids
        table = np.zeros(256, np.int32)
        for letter in "ACDEFGHIKLMNPQRSTVWYXUO":
            table[ord(letter)] = ids[letter]
        table[1], table[2] = ids["<ProteinS>"], ids["<ProteinE>"]
        sequences: list[str] = []
        count = 0

        def write() -> None:
            offsets = np.zeros(len(sequences) + 1, np.int32)
            np.cumsum([len(s) + 2 for s in sequences], out=offsets[1:])
            codes = np.frombuffer(("\x01" + "\x02\x01".join(sequences) + "\x02").encode(), np.uint8)
            texts = pa.array([f"<ProteinS>{s}<ProteinE>" for s in sequences], pa.large_string())
            tokens = pa.ListArray.from_arrays(pa.array(offsets), pa.array(table[codes]))
            # The column settings the shards use (pipeline.shards): no dictionary for either column (unique per
            # record), BYTE_STREAM_SPLIT ids, no statistics; the fastest and smallest of pyarrow's settings measured.
            pq.write_table(pa.table({"text": texts, "input_ids": tokens}), tmp / "floor.parquet", compression="zstd",
                           use_dictionary=False, write_statistics=False,
                           column_encoding={"input_ids.list.element": "BYTE_STREAM_SPLIT"})

        for record in SeqIO.parse(uniprot_fasta, "fasta"):
            sequences.append(str(record.seq))
            if len(sequences) == 4096:
                write()
                count, sequences = count + len(sequences), []
        write()
        return count + len(sequences)

    def decomposed_mofs() -> int:
        from grammar.material.mof_decomposition import decompose_mof

        for path in mof_cifs:
            with warnings.catch_warnings():  # as the source does: pymatgen warns on every CoRE file
                warnings.simplefilter("ignore")
                structure = CifParser.from_str(path.read_text()).parse_structures(primitive=False)[0]
            decompose_mof(structure, path.stem)
        return len(mof_cifs)

    def rdkit_molecules() -> int:
        return sum(1 for s in smiles if Chem.MolToSmiles(Chem.MolFromSmiles(s)))

    def rdkit_molecule_keys() -> int:
        """Bare RDKit doing the work the default molecule path must: one parse, canonical SMILES (the text and
        the dedup key) and Murcko scaffold (split group)."""
        from rdkit.Chem.Scaffolds import MurckoScaffold

        for s in smiles:
            mol = Chem.MolFromSmiles(s)
            Chem.MolToSmiles(mol), MurckoScaffold.MurckoScaffoldSmiles(mol=mol)
        return len(smiles)

    def rdkit_reactions() -> int:
        for rxn in reactions:
            for part in rxn.split(">"):
                for s in filter(None, part.split(".")):
                    Chem.MolToSmiles(Chem.MolFromSmiles(s))
        return len(reactions)

    cutoff = PdbConfig().pocket_cutoff

    def gemmi_entries() -> int:
        """gemmi reads each entry, then finds the atoms within the pocket cutoff of every ligand heavy atom."""
        for path in pdb_files:
            structure = gemmi.read_structure(str(path))
            structure.setup_entities()
            model = structure[0]
            search = gemmi.NeighborSearch(model, structure.cell, cutoff).populate()
            for chain in model:
                for residue in chain:
                    if residue.entity_type == gemmi.EntityType.NonPolymer and not residue.is_water():
                        for atom in residue:
                            if atom.element != gemmi.Element("H"):
                                search.find_atoms(atom.pos, "\0", radius=cutoff)
        return len(pdb_files)

    def pymatgen_crystals() -> int:
        parsed = [CifParser.from_str(c).parse_structures(primitive=False)[0] for c in cifs]
        parsed += [Structure.from_file(p) for p in structures]
        return sum(1 for s in parsed if SpacegroupAnalyzer(s, symprec=0.01).get_space_group_number())

    def anarci_chains() -> int:
        from anarci import anarci

        anarci([(str(i), s) for i, s in enumerate(oas_chains)], scheme="imgt", allowed_species=None)
        return len(oas_chains) // 2

    out = tmp / "out"
    out.mkdir()
    return [
        ("molecule", rdkit_molecules, lambda: ingest_in_process("smiles", [smiles_file], out)),
        ("molecule (floor: keys)", rdkit_molecule_keys, lambda: ingest_in_process("smiles", [smiles_file], out)),
        ("molecule (key=inchikey)", rdkit_molecules,
         lambda: ingest_in_process("smiles", [smiles_file], out, {"molecule_key": "inchikey"})),
        ("reaction", rdkit_reactions, lambda: ingest_in_process("uspto", [DATA / "uspto/USPTO_50K_sample.csv"], out)),
        ("protein+complex", gemmi_entries, lambda: ingest_in_process("pdb", pdb_files, out)),
        ("material", pymatgen_crystals,
         lambda: ingest_in_process("mp", [DATA / "mp/mp_20_sample.csv", *structures], out)),
        ("protein seq (uniprot)", biopython_fasta, lambda: ingest_in_process("uniprot", [uniprot_fasta], out)),
        ("protein seq (+Parquet)", biopython_fasta_ids_parquet,
         lambda: ingest_in_process("uniprot", [uniprot_fasta], out)),
        ("protein seq (flat file)", biopython_flat_file, lambda: ingest_in_process("uniprot", [uniprot_flat], out)),
        ("mof", decomposed_mofs, lambda: ingest_in_process("mof", mof_cifs, out)),
        ("antibody (OAS pairs)", anarci_chains, lambda: ingest_in_process("antibody", [oas_file], out)),
    ]


UNIPROT_COPIES = 50


def repeated_fasta(tmp: Path, copies: int = UNIPROT_COPIES) -> Path:
    """The bundled UniProtKB FASTA (1,100 H. pylori records, ~2 ms for Biopython) written ``copies`` times into one
    file, so both sides run long enough to time and the source's 4,096-record chunks fill as in a real file."""
    bundled = DATA / "uniprot/uniprotkb_UP000000429_Hpylori26695_proteome_first1100.fasta"
    path = tmp / "uniprot_repeated.fasta"
    path.write_text(bundled.read_text() * copies)
    print(f"# input: protein seq (uniprot) = the bundled 1,100-record UniProtKB FASTA repeated {copies} times "
          f"({1100 * copies:,} records)")
    return path


def repeated_flat_file(tmp: Path, copies: int = 100) -> Path:
    """The two bundled UniProt flat files (8 Swiss-Prot + 6 UniProtKB entries, ~2.5 ms for Biopython) written
    ``copies`` times into one file."""
    names = ("swissprot_flatfile_8entries_biopython_multi_ex.dat",
             "uniprotkb_flatfile_6entries_uniprot-store_flatFIleSample.dat")
    path = tmp / "uniprot_repeated.dat"
    path.write_text("".join((DATA / "uniprot" / name).read_text() for name in names) * copies)
    print(f"# input: protein seq (flat file) = the bundled 14 UniProt flat-file entries repeated {copies} times "
          f"({14 * copies:,} entries)")
    return path


def oas_unit(tmp: Path, copies: int = 8) -> tuple[Path, list[str]]:
    """The valid rows of the OAS-layout test unit, ``copies`` variants each (heavy/light pairs); its chains."""
    with gzip.open(DATA / "antibody/oas_paired_layout_from_sabdab_structures.csv.gz", "rt") as handle:
        metadata = handle.readline()
        rows = [row for row in csv.DictReader(handle)  # the bad rows' ids say what is wrong: 8KDM:E_stop, ...
                if "_" not in row["sequence_id_heavy"] + row["sequence_id_light"]]
    # Copy k drops the last k residues of both chains (the end of framework 4): every sequence is unique, as in
    # a real unit, so neither side gains from repeats.
    unique = [{**row, **{c: row[c][: len(row[c]) - k] for c in ("sequence_alignment_aa_heavy",
                                                                   "sequence_alignment_aa_light")}}
              for k in range(copies) for row in rows]
    path = tmp / "oas_unit.csv"
    with open(path, "w", newline="") as handle:
        handle.write(metadata)
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(unique)
    return path, [row[c] for row in unique for c in ("sequence_alignment_aa_heavy", "sequence_alignment_aa_light")]


def per_domain(n_molecules: int, rounds: int, only: str | None = None) -> None:
    from grammar.molecule import canonical_smiles

    ratios: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        rows = domain_rows(Path(tmp), n_molecules)  # says which SMILES input it uses, before the table
        print("per domain, one process: items/s of the full ingest path vs the bare library parse (same run;")
        print(f"best of {rounds} alternating rounds each, so both sides see the same machine load)")
        print(f"{'domain':22s} {'floor items/s':>14s} {'ingest items/s':>15s} {'records/s':>10s} {'ingest/floor':>13s}")
        for domain, floor, ingest in rows:
            if only and not domain.startswith(only):
                continue
            ingest()  # warm caches (CCD, tokenizer, RDKit) so both sides are measured warm
            floor_s = ingest_s = float("inf")
            for _ in range(rounds):
                floor_items, seconds = timed(floor)
                floor_s = min(floor_s, seconds)
                canonical_smiles.cache_clear()  # every round sees its molecules for the first time, as the floor does
                (items, records), seconds = timed(lambda ingest=ingest: ingest())
                ingest_s = min(ingest_s, seconds)
            ratios[domain] = (items / ingest_s) / (floor_items / floor_s)
            print(f"{domain:22s} {floor_items / floor_s:14.0f} {items / ingest_s:15.0f} {records / ingest_s:10.0f} "
                  f"{ratios[domain]:12.2f}x")
    targets = [("PDB entries (protein+complex)", "protein+complex", 0.6), ("crystals (material)", "material", 0.6),
               ("default molecule path (molecule)", "molecule", 0.5)]
    for label, domain, target in targets:
        if domain in ratios:
            verdict = "meets" if ratios[domain] >= target else "BELOW"
            print(f"issue 13 target: {label} {ratios[domain]:.2f}x of the floor, {verdict} >= {target}x")


def ray_scaling(rows: int) -> None:
    from pipeline.ingest import IngestConfig, run_ingest
    from pipeline.ray_runtime import ray_session

    smiles = moses_smiles(rows)
    rows = len(smiles)
    with tempfile.TemporaryDirectory() as tmp:
        smiles_file = Path(tmp) / "molecules.smi"
        smiles_file.write_text("\n".join(smiles) + "\n")
        seconds = {}
        for workers in (1, 2):
            with PeakRss() as memory, ray_session(num_cpus=workers):
                config = IngestConfig("smiles", [str(smiles_file)], f"{tmp}/out{workers}", workers=workers)
                summary = run_ingest(config)
            seconds[workers] = summary.elapsed_s
            print(f"Ray, {workers} worker(s): {rows} molecules in {summary.elapsed_s:.1f} s = "
                  f"{rows / summary.elapsed_s:,.0f} molecules/s, {summary.stats.records} records, "
                  f"peak RSS (driver + Ray) {memory.peak / 2**30:.2f} GiB")
        print(f"speed-up 2 vs 1 workers: {seconds[1] / seconds[2]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecules", type=int, default=20_000)
    parser.add_argument("--ray-rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--only", help="per-domain rows whose name starts with this (e.g. antibody)")
    parser.add_argument("--cpu-time", action="store_true", help="per-domain rows timed by process CPU time")
    args = parser.parse_args()
    if args.cpu_time:
        global CLOCK
        CLOCK = cpu_time
        print("# per-domain rows timed by process CPU time (--cpu-time)")
    per_domain(args.molecules, args.rounds, args.only)
    if not args.skip_ray:
        ray_scaling(args.ray_rows)


if __name__ == "__main__":
    main()

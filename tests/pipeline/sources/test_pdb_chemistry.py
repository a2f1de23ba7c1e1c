"""Ligand and residue chemistry of the PDB source on real entries: linked oligosaccharides, artefacts,
partially modelled ligands, modified / D- residues.

References are independent of the source's code: the entry's own tables read with gemmi's CIF reader
(``_pdbx_branch_scheme``, ``_struct_conn``, ``_chem_comp.formula``, ``_atom_site``,
``_entity_poly.pdbx_seq_one_letter_code_can``), the CCD's ``_chem_comp`` table read straight from
biotite's bundled CCD, the CCD's own whole-molecule components for maltose (MAL) and maltotriose (MLR),
published formulas (PubChem: maltotriose C18H32O16), and the cited artefact lists' files.
"""

from __future__ import annotations

import gzip
import re
from collections import Counter
from functools import cache
from pathlib import Path

import gemmi
import pytest
from rdkit import Chem
from rdkit.Chem import rdMolDescriptors

from grammar.formats import FORMATS
from grammar.protein import RESIDUE_ALPHABET
from pipeline.records import Reject, Sample, SourceItem
from pipeline.sources.base import convert_file
from pipeline.sources.ccd import CCD_USER, ComponentDictionary, ComponentError, linked_component_smiles
from pipeline.sources.pdb import BIOLIP_ARTIFACTS, DEFAULT_EXCLUDED, PLINDER_ARTIFACTS, PdbConfig, PdbSource
from pipeline.sources.pdb_structure import load_entry, residue_letter

DATA = Path(__file__).resolve().parents[2] / "data" / "pdb"
CHEMISTRY = DATA / "chemistry"


def text_of(path: Path) -> str:
    return gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()


@cache
def block(name: str) -> gemmi.cif.Block:
    return gemmi.cif.read_string(text_of(CHEMISTRY / name)).sole_block()


def table(b: gemmi.cif.Block, category: str, columns: list[str]) -> list[list[str]]:
    return [[row.str(i) for i in range(len(columns))] for row in b.find(category, columns)]


@cache
def converted(name: str, config: PdbConfig | None = None) -> tuple[list[Sample], list[Reject]]:
    done = convert_file(PdbSource(config or PdbConfig()), str(CHEMISTRY / name))
    return done.samples, done.rejects


def formula_counts(formula: str) -> Counter:
    """'C6 H12 O6' or 'C6H12O6' -> Counter of elements."""
    counts: Counter = Counter()
    for element, n in re.findall(r"([A-Z][a-z]?)(\d*)", formula.replace(" ", "")):
        counts[element] += int(n or 1)
    return counts


def smiles_formula(smiles: str) -> Counter:
    return formula_counts(rdMolDescriptors.CalcMolFormula(Chem.MolFromSmiles(smiles)))


# --- oligosaccharides bound without a covalent link ---------------------------------------------------


def test_2d0f_oligosaccharides_are_not_linked_to_the_protein() -> None:
    """The premise, from the entry's own tables: every covale in _struct_conn joins two sugar residues."""
    b = block("2d0f.cif.gz")
    sugars = {mon for _, _, mon in table(b, "_pdbx_branch_scheme.", ["asym_id", "num", "mon_id"])}
    covale = table(b, "_struct_conn.", ["conn_type_id", "ptnr1_label_comp_id", "ptnr2_label_comp_id"])
    assert covale and all(a in sugars and c in sugars for kind, a, c in covale if kind == "covale")


def test_noncovalent_oligosaccharides_are_one_ligand_with_linked_chemistry() -> None:
    """2D0F's two branched entities (a BGC-GLC4 pentasaccharide with a 1-6 link, and BGC-GLC-GLC) are one
    ligand each; each formula is the sum of its monomers' (the entry's _chem_comp.formula) minus one water
    per glycosidic link: the glycosidic O counted once."""
    b = block("2d0f.cif.gz")
    formulas = {i: formula_counts(f) for i, f in table(b, "_chem_comp.", ["id", "formula"])}
    instances: dict[str, list[str]] = {}
    for asym, _, mon in table(b, "_pdbx_branch_scheme.", ["pdb_asym_id", "num", "mon_id"]):
        instances.setdefault(asym, []).append(mon)
    samples, rejects = converted("2d0f.cif.gz")
    complexes = [s for s in samples if s.task == "complex_residue_smiles"]
    assert not [r for r in rejects if "ligand" in r.locator]
    by_instance = {s.metadata["ligand_instance"].split(":")[0]: s for s in complexes}
    assert set(by_instance) == set(instances)
    for asym, members in instances.items():
        sample = by_instance[asym]
        assert sample.metadata["ligand_ccd_id"] == "-".join(members)
        expected = sum((formulas[m] for m in members), Counter())
        expected.subtract({"H": 2 * (len(members) - 1), "O": len(members) - 1})
        ligand = FORMATS[sample.task].parse(sample.text).ligand
        assert smiles_formula(ligand.smiles) == +expected
        mol = Chem.MolFromSmiles(ligand.smiles)
        assert mol.GetRingInfo().NumRings() == len(members)  # one pyranose ring each, no ring closed across
        centers = Chem.FindMolChiralCenters(mol, includeUnassigned=True, useLegacyImplementation=False)
        assert len(centers) == 5 * len(members) and all(label in "RS" for _, label in centers)
    trisaccharide = FORMATS["complex_residue_smiles"].parse(by_instance["C"].text).ligand.smiles
    assert smiles_formula(trisaccharide) == formula_counts("C18H32O16")  # maltotriose, PubChem CID 439586
    # Connectivity (InChIKey first block) equals the CCD's own whole-molecule maltotriose, MLR.
    reference = ComponentDictionary().lookup("MLR").smiles
    assert Chem.MolToInchiKey(Chem.MolFromSmiles(trisaccharide))[:14] == Chem.MolToInchiKey(
        Chem.MolFromSmiles(reference)
    )[:14]


@pytest.mark.parametrize(
    ("reference", "members", "links"),
    [
        ("MAL", ("GLC", "GLC"), ((0, "O4", 1, "C1"),)),
        ("MLR", ("GLC", "GLC", "GLC"), ((0, "O4", 1, "C1"), (1, "O4", 2, "C1"))),
    ],
)
def test_linked_monomers_equal_the_ccd_whole_molecule(reference: str, members, links) -> None:
    """alpha-1,4-linked GLC units, joined from the monomers, are the CCD's own maltose / maltotriose
    components (defined as one molecule each), stereo included: the full InChIKeys agree."""
    linked = linked_component_smiles("-".join(members), members, links).smiles
    whole = ComponentDictionary().lookup(reference).smiles
    assert Chem.MolToInchiKey(Chem.MolFromSmiles(linked)) == Chem.MolToInchiKey(Chem.MolFromSmiles(whole))


def test_covalent_glycans_stay_excluded() -> None:
    """1IGY's N-glycans (covale to ASN in _struct_conn) are skipped as glycans, one count per instance."""
    path = DATA / "mmcif" / "1igy.cif"
    samples = convert_file(PdbSource(), str(path)).samples
    b = gemmi.cif.read_string(path.read_text()).sole_block()
    instances = {asym for asym, in table(b, "_pdbx_branch_scheme.", ["pdb_asym_id"])}
    skipped = next(s for s in samples if s.task == "protein").metadata["ligands_skipped"]["glycan"]
    assert sum(skipped.values()) == len(instances)
    assert not [s for s in samples if s.task == "pocket" and s.metadata["ligand_instance"].split(":")[0] in instances]


# --- artefacts ----------------------------------------------------------------------------------------

ISSUE_ARTEFACTS = [
    "OLC", "OLA", "OLB", "LMT", "CPS", "HEZ", "PE5", "P33", "XPE",
    "7PE", "1PG", "BU1", "NHE", "CXS", "TAM", "B3P", "BCN",
]


@pytest.mark.parametrize("ccd_id", ISSUE_ARTEFACTS)
def test_detergents_and_additives_are_excluded_by_the_cited_lists(ccd_id: str) -> None:
    assert ccd_id in DEFAULT_EXCLUDED
    assert ccd_id in BIOLIP_ARTIFACTS | PLINDER_ARTIFACTS


def test_vendored_lists_are_read_whole() -> None:
    """Every id of the two vendored files (counted here from the files) is in the default exclusion."""
    data = Path(__file__).resolve().parents[3] / "pipeline" / "sources" / "data"
    biolip = [line.split("\t")[0] for line in (data / "biolip_ligand_list.tsv").read_text().splitlines() if line]
    plinder = [line for line in (data / "plinder_artifacts_badlist.csv").read_text().splitlines()
               if line and not line.startswith("#")]
    assert len(biolip) == 463 and len(plinder) == 265
    assert set(biolip) | set(plinder) <= DEFAULT_EXCLUDED


@pytest.mark.parametrize("ccd_id", ["FK5", "STI", "ATP", "HEM", "FAD", "NAD", "SAM"])
def test_drug_like_ligands_and_cofactors_are_not_excluded(ccd_id: str) -> None:
    assert ccd_id not in DEFAULT_EXCLUDED


def test_3wip_peg_is_skipped_and_acetylcholine_kept() -> None:
    """3WIP: the PEG 1PE copies are artefacts (skipped, counted); acetylcholine (ACH) gives pockets."""
    b = block("3wip.cif.gz")
    nonpoly = Counter(mon for mon, in table(b, "_pdbx_nonpoly_scheme.", ["mon_id"]))
    samples, _ = converted("3wip.cif.gz")
    protein = next(s for s in samples if s.task == "protein")
    assert protein.metadata["ligands_skipped"]["excluded_component"]["1PE"] == nonpoly["1PE"]
    pockets = Counter(s.metadata["ligand_ccd_id"] for s in samples if s.task == "pocket")
    assert set(pockets) == {"ACH"}


# --- partially modelled ligands ------------------------------------------------------------------------


def modelled_heavy_atoms(b: gemmi.cif.Block, chain: str, number: str, ccd_id: str) -> int:
    rows = table(b, "_atom_site.", ["auth_asym_id", "auth_seq_id", "auth_comp_id", "type_symbol", "label_alt_id"])
    return sum(r[:3] == [chain, number, ccd_id] and r[3] not in ("H", "D") and r[4] in ("", "A") for r in rows)


def test_partially_modelled_ligand_is_rejected_below_the_fraction() -> None:
    """3WIP's 1PE at H:302 has 11 of the 16 heavy atoms of its _chem_comp formula (C10 H22 O6) in _atom_site:
    a ``ligand_incomplete`` reject by default (1.0); the complete copies are written; at 0.6 it is written."""
    b = block("3wip.cif.gz")
    formula = dict(table(b, "_chem_comp.", ["id", "formula"]))["1PE"]
    full = sum(n for element, n in formula_counts(formula).items() if element != "H")
    observed = modelled_heavy_atoms(b, "H", "302", "1PE")
    assert (observed, full) == (11, 16)
    keep_peg = PdbConfig(excluded_components=DEFAULT_EXCLUDED - {"1PE"})
    samples, rejects = converted("3wip.cif.gz", keep_peg)
    [incomplete] = [r for r in rejects if r.reason_code == "ligand_incomplete"]
    assert "H:302 1PE" in incomplete.locator and f"{observed} of {full}" in incomplete.reason
    pockets = [s for s in samples if s.task == "pocket"]
    pegs = {s.metadata["ligand_instance"] for s in pockets if s.metadata["ligand_ccd_id"] == "1PE"}
    assert "H:302" not in pegs and pegs
    for instance in pegs:
        chain, number = instance.split(":")
        assert modelled_heavy_atoms(b, chain, number, "1PE") == full
    lenient = PdbConfig(excluded_components=DEFAULT_EXCLUDED - {"1PE"}, min_observed_heavy_atom_fraction=0.6)
    samples, rejects = converted("3wip.cif.gz", lenient)
    assert "H:302" in {s.metadata["ligand_instance"] for s in samples if s.task == "pocket"}
    assert not [r for r in rejects if r.reason_code == "ligand_incomplete"]


def test_fraction_outside_zero_to_one_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="min_observed_heavy_atom_fraction"):
        PdbConfig(min_observed_heavy_atom_fraction=1.5)


# --- residues ------------------------------------------------------------------------------------------


@cache
def ccd_chem_comp() -> dict[str, tuple[str, str, str]]:
    """CCD id -> (one_letter_code, mon_nstd_parent_comp_id, type), straight from biotite's bundled CCD."""
    from biotite.structure.info.ccd import get_ccd

    t = get_ccd()["chem_comp"]
    columns = [t[c].as_array().tolist() for c in ("id", "one_letter_code", "mon_nstd_parent_comp_id", "type")]
    return {i: (code, parent, kind) for i, code, parent, kind in zip(*columns, strict=True)}


@pytest.mark.parametrize(
    ("name", "chain"), [("chemistry/5i55.cif.gz", "A"), ("mmcif/1pfe.cif.gz", "B")]
)
def test_modified_and_d_residues_read_as_the_canonical_sequence(name: str, chain: str) -> None:
    """5I55 starts with selenomethionine (MSE); 1PFE's echinomycin has D-serine (DSN). The chain sequence is
    the entry's own ``pdbx_seq_one_letter_code_can`` (wwPDB's parent mapping)."""
    path = DATA / name
    b = gemmi.cif.read_string(text_of(path)).sole_block()
    canonical = {
        strands: re.sub(r"\s", "", seq)
        for seq, strands in table(b, "_entity_poly.", ["pdbx_seq_one_letter_code_can", "pdbx_strand_id"])
    }
    entry = load_entry(text_of(path), path.stem)
    [found] = [c for c in entry.chains if c.chain_id == chain]
    assert found.sequence == canonical[chain]
    monomers = {mon for mon, in table(b, "_entity_poly_seq.", ["mon_id"])}
    assert {"MSE", "DSN"} & monomers


@pytest.mark.parametrize("ccd_id", ["MSE", "DAL", "DSN", "DLE", "PTR", "SEP", "MLY", "SEC", "PYL", "CRO", "GYS"])
def test_residue_letters_are_the_ccd_one_letter_codes(ccd_id: str) -> None:
    """The CCD's ``one_letter_code`` as the CCD writes it: MSE M, D-residues their L letter, SEC U, PYL O, and
    the GFP chromophores CRO and GYS the tripeptides they formed from (TYG, SYG)."""
    code, _, _ = ccd_chem_comp()[ccd_id]
    assert residue_letter(ccd_id)[0] == code


def test_a_residue_without_a_code_takes_its_parents() -> None:
    """BP5 (bipyridyl-alanine) has no one_letter_code; the CCD names ALA as its parent."""
    code, parent, _ = ccd_chem_comp()["BP5"]
    assert code == "?" and parent == "ALA"
    assert residue_letter("BP5")[0] == ccd_chem_comp()["ALA"][0]


def test_peptide_components_map_to_x_only_without_a_ccd_code() -> None:
    """Over every peptide-linking CCD component: X exactly where neither the component nor its (single)
    parent has a one-letter code, or the code is outside the grammar's alphabet (ASX B, GLX Z)."""
    table_ = ccd_chem_comp()
    wrong = []
    for ccd_id, (code, parent, kind) in table_.items():
        if "peptide" not in kind.lower():
            continue
        expected = code if code != "?" else table_.get(parent, ("?",))[0]
        expected = "X" if expected in ("?", "") or set(expected) - set(RESIDUE_ALPHABET) else expected
        if residue_letter(ccd_id)[0] != expected:
            wrong.append((ccd_id, code, parent, residue_letter(ccd_id)[0]))
    assert not wrong, wrong[:10]


# --- SMILES-expanded pockets write the residue that is there ------------------------------------------


def alpha_carbon_label(smiles: str) -> str:
    """CIP label (RDKit's new CIP labeller) of the carbon carrying the amino and carboxyl groups."""
    from rdkit.Chem import rdCIPLabeler

    mol = Chem.MolFromSmiles(smiles)
    rdCIPLabeler.AssignCIPLabels(mol)
    [(_, alpha, *_)] = mol.GetSubstructMatches(Chem.MolFromSmarts("[NX3;H2][CX4][CX3](=O)[OX2H1]"))
    return mol.GetAtomWithIdx(alpha).GetProp("_CIPCode")


def expanded_residues(sample: Sample) -> list[str]:
    return re.findall(r"<PocketS>(.*?)<PocketE>", sample.text.split("<Trans>")[-1])


def test_d_serine_of_echinomycin_keeps_its_d_stereo() -> None:
    """1PFE: echinomycin's D-serines (DSN) sit in the pocket of its covalent quinoxaline (QUI). Written as
    D-serine: formula of the entry's _chem_comp DSN row, CIP R (D-serine is (R)-2-amino-3-hydroxypropanoic
    acid), and the mirror image of RDKit's own L-serine."""
    b = gemmi.cif.read_string(text_of(DATA / "mmcif" / "1pfe.cif.gz")).sole_block()
    formula = formula_counts(dict(table(b, "_chem_comp.", ["id", "formula"]))["DSN"])
    config = PdbConfig(max_nonstandard_fraction=1.0)
    done = convert_file(PdbSource(config), str(DATA / "mmcif" / "1pfe.cif.gz"))
    trans = [s for s in done.samples if s.task == "trans"]
    assert trans
    l_serine = Chem.MolFromSequence("S")
    mirror = Chem.MolToSmiles(Chem.MolFromSmiles(Chem.MolToSmiles(l_serine).replace("@@", "!").replace("@", "@@")
                                                 .replace("!", "@")))
    serines = [r for s in trans for r in expanded_residues(s) if smiles_formula(r) == smiles_formula("NC(CO)C(=O)O")]
    assert serines
    for smiles in serines:
        assert smiles_formula(smiles) == formula
        assert alpha_carbon_label(smiles) == "R"
        assert Chem.MolToSmiles(Chem.MolFromSmiles(smiles)) == mirror
    for sample in trans:
        form = FORMATS[sample.task]
        assert form.write(form.parse(sample.text)) == sample.text


def test_selenomethionine_keeps_its_selenium() -> None:
    """5I55's MSE 1: with a pocket reaching it, the expanded texts write selenomethionine (the entry's
    _chem_comp MSE formula, C5 H11 N O2 Se; CIP S as L-selenomethionine), not methionine; the one-letter
    texts say M (its CCD code), and each text reads back to itself."""
    b = block("5i55.cif.gz")
    formula = formula_counts(dict(table(b, "_chem_comp.", ["id", "formula"]))["MSE"])
    config = PdbConfig(excluded_components=frozenset(), pocket_cutoff=40.0)
    samples, _ = converted("5i55.cif.gz", config)
    expanded = [s for s in samples if s.task in ("trans", "pocket_smiles", "complex_residue_surface_expanded_smiles")]
    assert expanded
    for sample in expanded:
        first = expanded_residues(sample)[0]
        assert "[Se]" in first and smiles_formula(first) == formula and alpha_carbon_label(first) == "S"
        form = FORMATS[sample.task]
        parsed = form.parse(sample.text)
        assert form.write(parsed) == sample.text
        protein = parsed.protein
        assert protein.chains[0].sequence[0] == "M"
    pocket = next(s for s in samples if s.task == "pocket")
    assert pocket.text.startswith("<ProteinS><PocketS>M<PocketE>")


def test_residue_table_rows_are_the_ccd_components() -> None:
    """A few rows of the committed table, remade here from the CCD (the table is not stale), and each row's
    formula is the CCD's _chem_comp.formula."""
    from grammar.protein import nonstandard_residues

    dictionary = ComponentDictionary()
    for ccd_id in ("MSE", "SEP", "TPO", "PTR", "MLY", "DAL", "DSN", "CSO", "HYP", "PCA"):
        letter, smiles = nonstandard_residues()[ccd_id]
        assert smiles == dictionary.lookup(ccd_id).smiles
        code, _, _ = ccd_chem_comp()[ccd_id]
        assert letter == code
    from biotite.structure.info.ccd import get_ccd

    t = get_ccd()["chem_comp"]
    formulas = dict(zip(t["id"].as_array().tolist(), t["formula"].as_array().tolist(), strict=True))
    # Pyroglutamate is both PCA (Q) and 5HP (E) in the CCD; 5HP is obsolete, replaced by PCA (its own table).
    code, _, _ = ccd_chem_comp()["5HP"]
    assert "5HP" not in nonstandard_residues() and code == "E"
    rows = nonstandard_residues().items()
    wrong = [c for c, (_, smiles) in rows if smiles_formula(smiles) != formula_counts(formulas[c])]
    assert not wrong, wrong[:10]


def test_legacy_pdb_linked_sugars_are_the_same_oligosaccharides() -> None:
    """The legacy PDB format has no branched entities: 2D0F written as PDB by gemmi (LINK records for the
    glycosidic bonds) gives the same two ligands, with the same SMILES, as the mmCIF entry."""
    structure = gemmi.read_structure(str(CHEMISTRY / "2d0f.cif.gz"))
    structure.setup_entities()
    legacy = PdbSource().convert(SourceItem("pdb", "2d0f.pdb", "entry 2D0F", structure.make_pdb_string()))
    from_pdb = {s.text for s in legacy.samples if s.task == "complex_residue_smiles"}
    samples, _ = converted("2d0f.cif.gz")
    from_cif = {s.text for s in samples if s.task == "complex_residue_smiles"}
    assert len(from_cif) == 2 and from_pdb == from_cif


@pytest.mark.parametrize("asym", ["B", "C"])
def test_oligosaccharide_stereo_matches_the_deposited_coordinates(asym: str) -> None:
    """An independent derivation from the experiment: 2D0F's modelled sugar atoms (all single bonds, C and O
    only), bonded by RDKit from their distances and given stereo from their deposited 3D positions, are
    the same molecule, stereo included, as the ligand written from the CCD (full InChIKeys agree)."""
    from rdkit.Chem import rdDetermineBonds

    structure = gemmi.read_structure(str(CHEMISTRY / "2d0f.cif.gz"))
    atoms = [atom for chain in structure[0] for residue in chain if residue.subchain == asym
             for atom in residue if atom.element.name != "H" and atom.altloc in ("\0", "A")]
    mol = Chem.RWMol()
    conformer = Chem.Conformer(len(atoms))
    for i, atom in enumerate(atoms):
        mol.AddAtom(Chem.Atom(atom.element.atomic_number))
        conformer.SetAtomPosition(i, [atom.pos.x, atom.pos.y, atom.pos.z])
    conformer.Set3D(True)
    mol.AddConformer(conformer)
    rdDetermineBonds.DetermineConnectivity(mol)
    for atom in mol.GetAtoms():  # hydrogens were not modelled: let RDKit fill valences
        atom.SetNoImplicit(False)
        atom.SetNumRadicalElectrons(0)
    observed = mol.GetMol()
    Chem.SanitizeMol(observed)
    Chem.AssignStereochemistryFrom3D(observed)
    samples, _ = converted("2d0f.cif.gz")
    [sample] = [s for s in samples if s.task == "complex_residue_smiles"
                and s.metadata["ligand_instance"].split(":")[0] == asym]
    written = FORMATS[sample.task].parse(sample.text).ligand.smiles
    assert Chem.MolToInchiKey(observed) == Chem.MolToInchiKey(Chem.MolFromSmiles(written))


def test_n_glycans_on_request_are_linked_molecules() -> None:
    """With ``include_glycans``, each of 1IGY's two N-glycans (nine sugars, one with FUL and one with FUC) is
    one molecule: the sum of its monomers' _chem_comp formulas minus one water per link, flagged covalent."""
    path = DATA / "mmcif" / "1igy.cif"
    b = gemmi.cif.read_string(path.read_text()).sole_block()
    formulas = {i: formula_counts(f) for i, f in table(b, "_chem_comp.", ["id", "formula"])}
    samples = convert_file(PdbSource(PdbConfig(include_glycans=True)), str(path)).samples
    glycans = [s for s in samples if s.task == "complex_residue_smiles" and "-" in s.metadata["ligand_ccd_id"]]
    assert len(glycans) == 2
    for sample in glycans:
        members = sample.metadata["ligand_ccd_id"].split("-")
        expected = sum((formulas[m] for m in members), Counter())
        expected.subtract({"H": 2 * (len(members) - 1), "O": len(members) - 1})
        assert smiles_formula(FORMATS[sample.task].parse(sample.text).ligand.smiles) == +expected
        assert sample.metadata["covalent"]


def test_linked_members_come_from_the_user_dictionary_first() -> None:
    """With a user components file (the verbatim CCD entry of GLC, leaving-atom flags included) and no
    bundled CCD, maltose is built from the user's GLC, recorded as such, and is the CCD's MAL; a member the
    file lacks (BGC) is an ``unknown_component`` error, not a silent fall-back."""
    user = ComponentDictionary(str(DATA / "ccd" / "verbatim" / "GLC.cif"), use_bundled=False)
    maltose = user.linked("GLC-GLC", ("GLC", "GLC"), ((0, "O4", 1, "C1"),))
    assert maltose.source == CCD_USER
    whole = ComponentDictionary().lookup("MAL").smiles
    assert Chem.MolToInchiKey(Chem.MolFromSmiles(maltose.smiles)) == Chem.MolToInchiKey(Chem.MolFromSmiles(whole))
    with pytest.raises(ComponentError) as error:
        user.linked("BGC-GLC", ("BGC", "GLC"), ((0, "O4", 1, "C1"),))
    assert error.value.reason_code == "unknown_component"

"""Building blocks of a MOF crystal: metal nodes and organic linkers, read off the bond network.

1. Bonds: atoms closer than the sum of their covalent radii (Cordero, pymatgen's ``CovalentRadius``)
   plus ``BOND_SLACK`` Å, Open Babel's connectivity rule, from pymatgen's array neighbour list
   (metal–metal: ``METAL_METAL_SLACK``).
2. Without the metals, the network splits into fragments; each must be finite (a molecule). Fragments
   with carbon are linkers; carbon-free ones (oxo, hydroxo, aqua, fluoride) belong to the node they bind.
3. Bond orders and charges: RDKit's ``DetermineBondOrders`` on the known connectivity, at the first
   charge of ``CHARGES_TRIED`` that gives a closed-shell molecule with exactly that many charged atoms.
4. Nodes: metals joined through metal–metal contacts or shared carbon-free ligands (must be finite: rod
   SBUs are refused), written as dot-separated ions (SMILES dative bonds would need '<'/'>', which the
   grammar reserves). Every metal gets the oxidation state that balances the ligands' charge, shared
   equally, so frameworks with one metal element only.

Fragments are found by a breadth-first search that carries each atom's cell offset: a bond that closes a
loop with a different offset means the fragment is periodic. pymatgen's ``get_structure_components``
answers the same question but builds Site objects per neighbour query (15 s on a 1200-atom CoRE MOF).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
from pymatgen.analysis.molecule_structure_comparator import CovalentRadius
from pymatgen.core import Composition, Structure
from rdkit import Chem
from rdkit.Chem import rdDetermineBonds
from rdkit.Geometry import Point3D

from grammar.errors import DisorderedStructure, InvalidStructure
from grammar.material.mof import MOF, is_metal

BOND_SLACK = 0.45  # Å
# Metal–metal contacts count as bonds only up to the radii sum + 0.1 Å (Cu–Cu in a paddlewheel: 2.63 Å of
# 2.64): with the full slack, carboxylate-bridged lanthanides 4.1 Å apart would merge into clusters.
METAL_METAL_SLACK = 0.10  # Å
CHARGES_TRIED = (0, -1, -2, -3, -4, -5, -6, 1, 2)

Bond = tuple[int, int, tuple[int, int, int]]  # i, j, cell of j relative to i


class MOFDecompositionError(InvalidStructure):
    reason_code = "mof_decomposition_failed"


# One subclass per way a decomposition fails, so a rejects table can group them (``reason_code``).
class NoMetal(MOFDecompositionError):
    reason_code = "mof_no_metal"


class PeriodicOrganicPart(MOFDecompositionError):
    """The metal-free part is an infinite network (a covalent framework, or bonds the radii rule misses)."""

    reason_code = "mof_periodic_organic_part"


class UnboundFragment(MOFDecompositionError):
    """A fragment bound to no metal: guest solvent or a counter-ion the CIF still holds."""

    reason_code = "mof_unbound_fragment"


class NoClosedShell(MOFDecompositionError):
    reason_code = "mof_no_closed_shell"


class MixedMetals(MOFDecompositionError):
    """More than one metal element: the equal-share oxidation rule cannot split the charge among them."""

    reason_code = "mof_mixed_metals"


class ChargeUnbalanced(MOFDecompositionError):
    """No single oxidation state in 0..4 balances the ligands' charge (often missing counter-ions)."""

    reason_code = "mof_charge_unbalanced"


class RodSBU(MOFDecompositionError):
    reason_code = "mof_rod_sbu"


@dataclass(frozen=True, slots=True)
class Fragment:
    atoms: tuple[int, ...]
    offsets: dict[int, np.ndarray]  # atom -> cell offset that makes the fragment whole
    periodic: bool


def bonds_of(structure: Structure) -> list[Bond]:
    radii = np.array([CovalentRadius.radius[site.specie.symbol] for site in structure])
    metal = np.array([is_metal(site.specie.symbol) for site in structure])
    centers, neighbours, images, distances = structure.get_neighbor_list(2 * radii.max() + BOND_SLACK)
    slack = np.where(metal[centers] & metal[neighbours], METAL_METAL_SLACK, BOND_SLACK)
    keep = (distances <= radii[centers] + radii[neighbours] + slack) & (centers < neighbours)
    return [(int(i), int(j), tuple(int(k) for k in image))
            for i, j, image in zip(centers[keep], neighbours[keep], images[keep], strict=True)]


def fragments_of(atoms: set[int], bonds: list[Bond]) -> list[Fragment]:
    """Connected pieces of the bond network restricted to ``atoms``, unwrapped across cells."""
    adjacent: dict[int, list[tuple[int, np.ndarray]]] = defaultdict(list)
    for i, j, image in bonds:
        if i in atoms and j in atoms:
            adjacent[i].append((j, np.array(image)))
            adjacent[j].append((i, -np.array(image)))
    seen: dict[int, np.ndarray] = {}
    fragments = []
    for start in sorted(atoms):
        if start in seen:
            continue
        seen[start], queue, members, periodic = np.zeros(3, dtype=int), [start], [start], False
        while queue:
            atom = queue.pop()
            for other, image in adjacent[atom]:
                wanted = seen[atom] + image
                if other not in seen:
                    seen[other] = wanted
                    queue.append(other)
                    members.append(other)
                elif not np.array_equal(seen[other], wanted):
                    periodic = True
        fragments.append(Fragment(tuple(sorted(members)), {a: seen[a] for a in members}, periodic))
    return fragments


def fragment_smiles(structure: Structure, fragment: Fragment, bonds: list[Bond], where: str) -> tuple[str, int]:
    """Canonical SMILES and charge of a finite fragment, from its connectivity and 3D coordinates."""
    index = {atom: k for k, atom in enumerate(fragment.atoms)}
    editable = Chem.RWMol()
    conformer = Chem.Conformer(len(index))
    for atom, k in index.items():
        editable.AddAtom(Chem.Atom(structure[atom].specie.symbol))
        coords = structure.lattice.get_cartesian_coords(structure[atom].frac_coords + fragment.offsets[atom])
        conformer.SetAtomPosition(k, Point3D(*map(float, coords)))
    for i, j, _ in bonds:
        if i in index and j in index and editable.GetBondBetweenAtoms(index[i], index[j]) is None:
            editable.AddBond(index[i], index[j], Chem.BondType.SINGLE)
    editable.AddConformer(conformer)
    for charge in CHARGES_TRIED:
        mol = Chem.Mol(editable)
        try:
            rdDetermineBonds.DetermineBondOrders(mol, charge=charge, embedChiral=False)
        except (ValueError, RuntimeError):
            continue
        charged = sum(1 for atom in mol.GetAtoms() if atom.GetFormalCharge())
        radicals = sum(atom.GetNumRadicalElectrons() for atom in mol.GetAtoms())
        if radicals == 0 and charged == abs(charge):
            return Chem.MolToSmiles(Chem.RemoveHs(mol)), charge
    raise NoClosedShell(f"{where}no closed-shell charge state for fragment {_formula(structure, fragment)}")


def _formula(structure: Structure, fragment: Fragment) -> str:
    return Composition([structure[i].specie for i in fragment.atoms]).formula.replace(" ", "")


@dataclass(frozen=True)
class MOFDecomposition:
    mof: MOF
    counts: dict[str, int]  # node or linker SMILES -> instances in the cell (for stoichiometry checks)


def decompose_mof(structure: Structure, source_id: str | None = None) -> MOFDecomposition:
    """Nodes and linkers of a MOF crystal with explicit hydrogens (e.g. a CoRE MOF or QMOF CIF)."""
    where = f"{source_id}: " if source_id else ""
    if not structure.is_ordered:
        raise DisorderedStructure(f"{where}partial occupancies ({structure.composition.formula}): bonds and charges "
                                  "need one atom per site")
    bonds = bonds_of(structure)
    metals = {i for i, site in enumerate(structure) if is_metal(site.specie.symbol)}
    if not metals:
        raise NoMetal(f"{where}no metal atom")
    bound_metals: dict[int, set[int]] = defaultdict(set)
    for i, j, _ in bonds:
        if (i in metals) != (j in metals):
            bound_metals[j if i in metals else i].add(i if i in metals else j)
    counts: Counter[str] = Counter()
    node_ligands: dict[int, str] = {}  # an atom of each carbon-free fragment -> its SMILES
    node_atoms, ligand_charge = set(metals), 0
    for fragment in fragments_of(set(range(len(structure))) - metals, bonds):
        if fragment.periodic:
            raise PeriodicOrganicPart(f"{where}the metal-free part {_formula(structure, fragment)} is periodic")
        if not any(bound_metals[a] for a in fragment.atoms):
            raise UnboundFragment(f"{where}{_formula(structure, fragment)} binds no metal (solvent or ion?)")
        smiles, charge = fragment_smiles(structure, fragment, bonds, where)
        ligand_charge += charge
        if any(structure[a].specie.symbol == "C" for a in fragment.atoms):
            counts[smiles] += 1
        else:
            node_ligands[fragment.atoms[0]] = smiles
            node_atoms |= set(fragment.atoms)
    linkers = set(counts)
    elements = {structure[i].specie.symbol for i in metals}
    oxidation, remainder = divmod(-ligand_charge, len(metals))
    if len(elements) != 1:
        raise MixedMetals(f"{where}metals {sorted(elements)}: one metal element per framework only")
    if remainder or not 0 <= oxidation <= 4:
        raise ChargeUnbalanced(
            f"{where}ligand charge {ligand_charge} does not split into one oxidation state over {len(metals)} "
            f"metal atoms of {sorted(elements)}"
        )
    ion = f"[{elements.pop()}{'+' + str(oxidation) if oxidation else ''}]"
    for cluster in fragments_of(node_atoms, bonds):
        if cluster.periodic:
            raise RodSBU(f"{where}inorganic unit {_formula(structure, cluster)} is periodic (rod SBU)")
        parts = [ion if a in metals else node_ligands[a] for a in cluster.atoms if a in metals or a in node_ligands]
        counts[Chem.MolToSmiles(Chem.MolFromSmiles(".".join(parts)))] += 1
    nodes = set(counts) - linkers
    return MOFDecomposition(MOF.from_smiles(nodes, linkers, source_id), dict(counts))


def mof_from_structure(structure: Structure, source_id: str | None = None) -> MOF:
    return decompose_mof(structure, source_id).mof

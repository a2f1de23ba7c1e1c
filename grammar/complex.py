"""Protein–ligand complexes in LOGOS's three forms.

- Residue–SMILES: protein chains, then ``<MoleculeS>ligand<MoleculeE>``;
- Residue–Surface–SMILES: pocket-annotated chains, then the ligand;
- Residue–Surface(SMILES-expanded)–SMILES: SMILES-expanded pocket chains, then the ligand.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from grammar.errors import MalformedText
from grammar.lexer import TokenStream
from grammar.molecule import Molecule, read_molecule_block, write_molecule
from grammar.pocket import BindingSite, Pocket, site_from_chains, write_pocket
from grammar.protein import Chain, Protein, read_chains, write_protein


class ComplexForm(StrEnum):
    RESIDUE_SMILES = "residue_smiles"
    RESIDUE_SURFACE_SMILES = "residue_surface_smiles"
    RESIDUE_SURFACE_EXPANDED_SMILES = "residue_surface_expanded_smiles"


@dataclass(frozen=True, slots=True)
class Complex:
    protein: Protein
    ligand: Molecule
    pocket: Pocket | None = None

    def __post_init__(self) -> None:
        if self.pocket is not None:
            BindingSite(self.protein, self.pocket)  # validates pocket indices against the chains

    def view(self, form: ComplexForm) -> Complex:
        """What the text of ``form`` carries: the Residue–SMILES form has no pocket."""
        return Complex(self.protein, self.ligand, None) if form is ComplexForm.RESIDUE_SMILES else self


def write_complex(complex_: Complex, form: ComplexForm) -> str:
    if form is ComplexForm.RESIDUE_SMILES:
        protein_text = write_protein(complex_.protein)
    else:
        if complex_.pocket is None:
            raise MalformedText(f"the {form} form needs a pocket, and this complex has none")
        site = BindingSite(complex_.protein, complex_.pocket)
        protein_text = write_pocket(site, expanded=form is ComplexForm.RESIDUE_SURFACE_EXPANDED_SMILES)
    return protein_text + write_molecule(complex_.ligand)


def parse_complex(text: str) -> tuple[Complex, ComplexForm]:
    """Parse any of the three forms; the form is read off the pocket annotations."""
    stream = TokenStream(text)
    chains = read_chains(stream)
    ligand = read_molecule_block(stream)
    stream.expect_end()
    styles = {c.expanded for c in chains if c.expanded is not None}
    if not styles:
        return Complex(Protein(tuple(Chain(c.sequence) for c in chains)), ligand), ComplexForm.RESIDUE_SMILES
    site = site_from_chains(chains, stream, expanded=None)
    form = ComplexForm.RESIDUE_SURFACE_EXPANDED_SMILES if styles == {True} else ComplexForm.RESIDUE_SURFACE_SMILES
    return Complex(site.protein, ligand, site.pocket), form

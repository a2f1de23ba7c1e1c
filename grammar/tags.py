"""The LOGOS tags and task tokens, verbatim, plus the tokenizer's special tokens."""

from __future__ import annotations

PROTEIN_S, PROTEIN_E = "<ProteinS>", "<ProteinE>"
POCKET_S, POCKET_E = "<PocketS>", "<PocketE>"
MOLECULE_S, MOLECULE_E = "<MoleculeS>", "<MoleculeE>"
MATERIAL_S, MATERIAL_E = "<MaterialS>", "<MaterialE>"
METAL_S, METAL_E = "<MetalS>", "<MetalE>"
ANTIBODY_S, ANTIBODY_E = "<AntibodyS>", "<AntibodyE>"
# Not LOGOS tags: the CDRs of an antibody chain (grammar.antibody). Last in the vocabulary, so older ids stay.
CDR_S, CDR_E = "<CdrS>", "<CdrE>"
# Not a LOGOS tag: reagents need a home so a reaction keeps them when the user asks for it.
REAGENT_S, REAGENT_E = "<ReagentS>", "<ReagentE>"

REACT = "<React>"
REVERSE_REACT = "<ReverseReact>"
SEARCH = "<Search>"
TRANS = "<Trans>"

BOS, EOS, PAD, UNK = "<bos>", "<eos>", "<pad>", "<unk>"

SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK)
OBJECT_TAGS: tuple[str, ...] = (
    PROTEIN_S, PROTEIN_E, POCKET_S, POCKET_E, MOLECULE_S, MOLECULE_E,
    MATERIAL_S, MATERIAL_E, METAL_S, METAL_E, REAGENT_S, REAGENT_E, ANTIBODY_S, ANTIBODY_E,
)
TASK_TOKENS: tuple[str, ...] = (REACT, REVERSE_REACT, SEARCH, TRANS)
REGION_TAGS: tuple[str, ...] = (CDR_S, CDR_E)
GRAMMAR_TAGS: tuple[str, ...] = OBJECT_TAGS + TASK_TOKENS + REGION_TAGS

"""Errors raised by grammar serializers, parsers and the tokenizer.

Every error names *where* (character offset in the grammar text, when there is text) and *why*,
so that a rejects table can record a precise, human-readable reason.
"""

from __future__ import annotations


class GrammarError(ValueError):
    """Base class: invalid object or invalid grammar text."""

    reason_code = "grammar_error"

    def __init__(self, reason: str, *, position: int | None = None, text: str | None = None) -> None:
        self.reason = reason
        self.position = position
        self.text = text
        super().__init__(self._format())

    def _format(self) -> str:
        if self.position is None:
            return self.reason
        where = f"at char {self.position}"
        if self.text is not None:
            lo, hi = max(0, self.position - 20), min(len(self.text), self.position + 20)
            snippet = self.text[lo:hi].replace("\n", "\\n")
            caret = " " * (self.position - lo)
            return f"{where}: {self.reason}\n  {snippet}\n  {caret}^"
        return f"{where}: {self.reason}"


class MalformedText(GrammarError):
    """The text does not follow the grammar (missing tag, wrong order, trailing text)."""

    reason_code = "malformed_text"


class UnknownToken(GrammarError):
    """A piece of text that is not in the vocabulary."""

    reason_code = "unknown_token"


class InvalidSmiles(GrammarError):
    """A SMILES string that RDKit cannot parse and sanitize."""

    reason_code = "invalid_smiles"


class InvalidResidue(GrammarError):
    """A residue outside the amino-acid alphabet, or an unknown residue SMILES."""

    reason_code = "invalid_residue"


class InvalidStructure(GrammarError):
    """A crystal that cannot be written or rebuilt (disordered, unknown element, bad symmetry)."""

    reason_code = "invalid_structure"


class DisorderedStructure(InvalidStructure):
    """A crystal with partial occupancies: the grammar writes ordered crystals only."""

    reason_code = "disordered_structure"

"""Splitting grammar text into tokens, and a cursor the domain parsers read from.

One regular expression defines what a token is. The HF tokenizer's pre-tokenizer uses the very same
pattern (see ``grammar.tokenizer``), so the parsers and the Rust encoder cannot disagree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from grammar.errors import GrammarError, MalformedText, UnknownToken

# Order matters: longer alternatives first. SMILES never contains '<' or '>', so an angle-bracketed run
# is always a grammar token (tag, task token, material token, special token).
TOKEN_PATTERN = (
    r"<[A-Za-z][^<>\s]*>"  # tags, task tokens, material tokens, specials
    r"|\[[^\[\]<>\s]+\]"  # SMILES bracket atoms, kept whole (also element tokens of materials)
    r"|Br|Cl"  # the two-letter organic-subset atoms
    r"|%\d\d"  # two-digit ring closures
    r"|[A-Za-z]"  # residues and one-letter atoms
    r"|\d"  # one-digit ring closures
    r"|[=#$:/\\().~*+\-@]"  # bonds, branches, dot, wildcard
)
TOKEN_RE = re.compile(TOKEN_PATTERN)


@dataclass(frozen=True, slots=True)
class Token:
    text: str
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.text)


def lex(text: str) -> list[Token]:
    """Tokens of ``text``; any character no token covers is an ``UnknownToken`` error."""
    tokens: list[Token] = []
    pos = 0
    for match in TOKEN_RE.finditer(text):
        if match.start() != pos:
            raise UnknownToken(f"unexpected character {text[pos]!r}", position=pos, text=text)
        tokens.append(Token(match.group(), match.start()))
        pos = match.end()
    if pos != len(text):
        raise UnknownToken(f"unexpected character {text[pos]!r}", position=pos, text=text)
    return tokens


def split_pieces(text: str) -> list[str]:
    """Token strings of ``text`` (no position checks): the pure-Python reference tokenization."""
    return TOKEN_RE.findall(text)


class TokenStream:
    """A cursor over the tokens of one grammar string, with errors that point at the text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = lex(text)
        self.index = 0

    def peek(self, ahead: int = 0) -> str | None:
        i = self.index + ahead
        return self.tokens[i].text if i < len(self.tokens) else None

    @property
    def position(self) -> int:
        return self.tokens[self.index].start if self.index < len(self.tokens) else len(self.text)

    def at_end(self) -> bool:
        return self.index >= len(self.tokens)

    def next(self) -> Token:
        if self.at_end():
            raise self.error("unexpected end of text")
        token = self.tokens[self.index]
        self.index += 1
        return token

    def accept(self, tag: str) -> bool:
        if self.peek() == tag:
            self.index += 1
            return True
        return False

    def expect(self, tag: str) -> Token:
        found = self.peek()
        if found != tag:
            raise self.error(f"expected {tag}, found {found!r}" if found else f"expected {tag}, found end")
        return self.next()

    def take_until(self, stops: Iterable[str]) -> tuple[str, int]:
        """Consume tokens up to (not including) the first stop tag; return their text and its offset.

        Tags may not appear in between: the content of a block is plain SMILES or residues.
        """
        stop_set = set(stops)
        start = self.position
        while not self.at_end() and self.peek() not in stop_set:
            token = self.peek()
            if token is not None and token.startswith("<"):
                raise self.error(f"unexpected {token} before {' or '.join(sorted(stop_set))}")
            self.index += 1
        if self.at_end():
            raise self.error(f"unterminated: expected one of {sorted(stop_set)}")
        return self.text[start : self.position], start

    def expect_end(self) -> None:
        if not self.at_end():
            raise self.error(f"unexpected trailing text starting with {self.peek()!r}")

    def error(self, reason: str, kind: type[GrammarError] = MalformedText, at: int | None = None) -> GrammarError:
        return kind(reason, position=self.position if at is None else at, text=self.text)

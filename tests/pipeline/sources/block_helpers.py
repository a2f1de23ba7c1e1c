"""What the block-path tests of several sources share."""

from __future__ import annotations

from grammar.tokenizer import default_tokenizer


class OtherKindTokenizer:
    """The native tokenizer seen as another kind: the block path must then use the tokenizer's batch call."""

    kind = "other"

    def __init__(self) -> None:
        self.inner = default_tokenizer()

    def encode_batch_results(self, texts, *, engine="rust"):
        return self.inner.encode_batch_results(texts, engine=engine)

"""``logos grammar vocab|encode|decode``."""

from __future__ import annotations

import argparse
import json
import sys

from grammar.errors import GrammarError


def register(subparsers: argparse._SubParsersAction) -> None:
    grammar = subparsers.add_parser("grammar", help="the shared grammar's vocabulary and tokenizer")
    commands = grammar.add_subparsers(dest="grammar_command", required=True, metavar="ACTION")

    vocab = commands.add_parser("vocab", help="write a tokenizer directory (native, or --extend a base LLM's)")
    vocab.add_argument("--out", required=True, help="output directory")
    vocab.add_argument("--extend", metavar="HF_TOKENIZER_DIR",
                       help="instead, extend this local HF tokenizer (Llama-3, Qwen3, ...) with the grammar's "
                            "tags: an extended tokenizer (see grammar.hf_extend)")
    vocab.add_argument("--no-material-tokens", action="store_true",
                       help="with --extend: add only the tags, not the crystal-grammar tokens")
    vocab.add_argument("--eod-token", help="with --extend: the document-end token (default: <|end_of_text|>, "
                                           "<|endoftext|> or the base's eos)")
    vocab.set_defaults(func=_vocab)

    encode = commands.add_parser("encode", help="grammar text on stdin (one per line) -> token ids")
    encode.add_argument("--special", action="store_true", help="add the tokenizer's prefix (<bos>)")
    encode.add_argument("--tokenizer", help="tokenizer directory (default: the built-in vocabulary)")
    encode.set_defaults(func=_encode)

    decode = commands.add_parser("decode", help="space-separated token ids on stdin -> grammar text")
    decode.add_argument("--tokenizer", help="tokenizer directory (default: the built-in vocabulary)")
    decode.set_defaults(func=_decode)


def _tokenizer(directory: str | None):
    """A saved tokenizer of either kind, or the built-in grammar vocabulary."""
    from grammar.tokenizer import default_tokenizer, load_tokenizer

    return load_tokenizer(directory) if directory else default_tokenizer()


def _vocab(args: argparse.Namespace) -> int:
    if args.extend:
        from grammar.hf_extend import extend_hf_tokenizer

        try:
            meta = extend_hf_tokenizer(args.extend, args.out, material_tokens=not args.no_material_tokens,
                                       eod_token=args.eod_token)
        except GrammarError as exc:
            print(f"logos grammar vocab: {exc}", file=sys.stderr)
            return 2
    else:
        tokenizer = _tokenizer(None)
        tokenizer.save(args.out)
        meta = tokenizer.vocab.metadata()
    print(json.dumps(meta, indent=1))
    return 0


def _lines(stream) -> list[tuple[int, str]]:
    return [(n, line.rstrip("\n")) for n, line in enumerate(stream, start=1)]


def _encode(args: argparse.Namespace) -> int:
    tokenizer = _tokenizer(args.tokenizer)
    lines = _lines(sys.stdin)
    failures = 0
    results = tokenizer.encode_batch_results([text for _, text in lines], special=args.special)
    for (number, _), result in zip(lines, results, strict=True):
        if isinstance(result, GrammarError):
            failures += 1
            print(f"line {number}: {result}", file=sys.stderr)
            print()
        else:
            print(" ".join(map(str, result)))
    return 1 if failures else 0


def _decode(args: argparse.Namespace) -> int:
    tokenizer = _tokenizer(args.tokenizer)
    failures = 0
    for number, line in _lines(sys.stdin):
        try:
            ids = [int(piece) for piece in line.split()]
            print(tokenizer.decode(ids))
        except (ValueError, GrammarError) as exc:
            failures += 1
            print(f"line {number}: {exc}", file=sys.stderr)
            print()
    return 1 if failures else 0

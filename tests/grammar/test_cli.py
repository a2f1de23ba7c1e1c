from __future__ import annotations

import json
import subprocess
import sys

from grammar.tokenizer import default_tokenizer

TEXTS = ["<MoleculeS>CC(=O)Nc1ccc(O)cc1<MoleculeE>", "<ProteinS>MKV<PocketS>L<PocketE>A<ProteinE>"]


def logos(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workflows.cli", *args], input=stdin, capture_output=True, text=True)


def test_vocab_encode_decode_round_trip(tmp_path):
    result = logos("grammar", "vocab", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["size"] == default_tokenizer().vocab_size
    assert (tmp_path / "tokenizer.json").exists() and (tmp_path / "grammar_vocab.json").exists()

    encoded = logos("grammar", "encode", "--tokenizer", str(tmp_path), stdin="\n".join(TEXTS) + "\n")
    assert encoded.returncode == 0, encoded.stderr
    lines = encoded.stdout.splitlines()
    assert [list(map(int, line.split())) for line in lines] == default_tokenizer().encode_batch(TEXTS)

    decoded = logos("grammar", "decode", stdin=encoded.stdout)
    assert decoded.stdout.splitlines() == TEXTS

    special = logos("grammar", "encode", "--special", stdin=TEXTS[0] + "\n")
    ids = list(map(int, special.stdout.split()))
    assert ids == [default_tokenizer().bos_id, *default_tokenizer().encode(TEXTS[0])]  # a prefix, no eos
    assert logos("grammar", "decode", stdin=special.stdout).stdout.strip() == "<bos>" + TEXTS[0]


def test_bad_lines_are_reported_by_line_and_the_rest_still_encodes():
    result = logos("grammar", "encode", stdin=f"{TEXTS[0]}\n<MoleculeS>C C<MoleculeE>\n{TEXTS[1]}\n")
    assert result.returncode == 1
    assert "line 2: at char 12" in result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and lines[1] == "" and lines[0] and lines[2]
    bad_ids = logos("grammar", "decode", stdin="4 8 x\n")
    assert bad_ids.returncode == 1 and "line 1" in bad_ids.stderr

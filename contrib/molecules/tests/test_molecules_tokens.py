"""SMILES / SELFIES tokenizers and JSON vocabularies."""

from __future__ import annotations

import pytest

pytest.importorskip("rdkit")
pytest.importorskip("selfies")
from _shim import molecules_module

data = molecules_module("data")
tokens = molecules_module("tokens")

SMILES = data.load_sample("train")[:300]


def test_smiles_regex_covers_strings() -> None:
    for s in SMILES:
        assert "".join(tokens.tokenize_smiles(s)) == s
    assert tokens.tokenize_smiles("ClC[C@@H](Br)c1ccccc1%10") == [
        "Cl",
        "C",
        "[C@@H]",
        "(",
        "Br",
        ")",
        "c",
        "1",
        "c",
        "c",
        "c",
        "c",
        "c",
        "1",
        "%10",
    ]


def test_smiles_tokenizer_round_trip() -> None:
    tok = tokens.MolTokenizer.build("smiles", SMILES)
    for s in SMILES:
        ids = tok.encode(s)
        assert ids[0] == tokens.BOS_ID and ids[-1] == tokens.EOS_ID
        assert tokens.UNK_ID not in ids
        assert tok.decode(ids) == tokens.canonicalize(s)


def test_selfies_round_trip() -> None:
    tok = tokens.MolTokenizer.build("selfies", SMILES)
    same = sum(tok.decode(tok.encode(s)) == tokens.canonicalize(s) for s in SMILES)
    assert same >= 0.99 * len(SMILES)


def test_selfies_decodes_anything_valid() -> None:
    tok = tokens.MolTokenizer.build("selfies", SMILES[:20])
    import random

    rng = random.Random(0)
    for _ in range(50):
        ids = [rng.randrange(4, len(tok)) for _ in range(rng.randrange(1, 40))]
        out = tok.decode(ids)
        assert tokens.canonicalize(out) is not None


def test_vocab_json_round_trip(tmp_path) -> None:
    tok = tokens.MolTokenizer.build("selfies", SMILES[:50])
    path = tmp_path / "vocab.json"
    tok.save(path)
    back = tokens.MolTokenizer.load(path)
    assert back.kind == "selfies" and back.vocab.tokens == tok.vocab.tokens
    assert back.vocab.tokens[:4] == list(tokens.SPECIALS)
    assert back.encode(SMILES[0]) == tok.encode(SMILES[0])
    assert tok.vocab.encode(["[NotAToken]"]) == [tokens.UNK_ID]

"""Tokenizers and vocabularies for SMILES and SELFIES strings.

Molecules always enter and leave as SMILES.  A :class:`MolTokenizer` with
``kind="smiles"`` splits SMILES with the usual atom-level regular expression
(Schwaller et al., 2019); with ``kind="selfies"`` it first translates SMILES
to SELFIES (``selfies.encoder``) and splits it into SELFIES symbols.  Decoding
maps ids back to a string and, for SELFIES, through ``selfies.decoder``; the
result is canonicalized with RDKit when it parses.

Vocabularies are stored as JSON (no pickle).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Repr = Literal["smiles", "selfies"]

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS: tuple[str, ...] = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3

SMILES_REGEX = re.compile(
    r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$|%[0-9]{2}|[0-9])"
)


def tokenize_smiles(smiles: str) -> list[str]:
    """Split a SMILES string into atom-level tokens.

    Raises ``ValueError`` if the tokens do not cover the whole string.
    """
    tokens = SMILES_REGEX.findall(smiles)
    if "".join(tokens) != smiles:
        raise ValueError(f"cannot tokenize SMILES {smiles!r}")
    return tokens


def smiles_to_selfies_tokens(smiles: str) -> list[str]:
    """SMILES -> SELFIES -> list of SELFIES symbols (``"[C]"``, ``"[Ring1]"``...)."""
    import selfies as sf

    return list(sf.split_selfies(sf.encoder(smiles)))


def canonicalize(smiles: str) -> str | None:
    """RDKit canonical SMILES, or ``None`` if empty / unparsable."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")  # type: ignore[attr-defined]  # missing from rdkit stubs
    if not smiles:
        return None
    mol = Chem.MolFromSmiles(smiles)
    return None if mol is None else Chem.MolToSmiles(mol)


@dataclass
class Vocab:
    """Token <-> id map; ids 0..3 are ``<pad> <bos> <eos> <unk>``."""

    tokens: list[str]
    stoi: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if tuple(self.tokens[: len(SPECIALS)]) != SPECIALS:
            self.tokens = list(SPECIALS) + [t for t in self.tokens if t not in SPECIALS]
        self.stoi = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]], extra: Iterable[str] = ()) -> Vocab:
        """Vocabulary of every token in ``sequences`` plus ``extra`` (sorted)."""
        seen: set[str] = set(extra)
        for seq in sequences:
            seen.update(seq)
        return cls(list(SPECIALS) + sorted(seen - set(SPECIALS)))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Token list -> ids (unknown tokens -> ``<unk>``), without bos/eos."""
        return [self.stoi.get(t, UNK_ID) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids -> tokens, stopping at ``<eos>`` and dropping ``<pad>``/``<bos>``/``<unk>``."""
        out: list[str] = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i in (PAD_ID, BOS_ID, UNK_ID) or i >= len(self.tokens):
                continue
            out.append(self.tokens[i])
        return out

    def to_dict(self) -> dict:
        return {"tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, d: dict) -> Vocab:
        return cls(list(d["tokens"]))


class MolTokenizer:
    """SMILES in, integer ids out (and back), for ``kind`` in {smiles, selfies}."""

    def __init__(self, kind: Repr, vocab: Vocab) -> None:
        if kind not in ("smiles", "selfies"):
            raise ValueError(f"kind must be 'smiles' or 'selfies', got {kind!r}")
        self.kind: Repr = kind
        self.vocab = vocab

    # --- construction / persistence -------------------------------------------------
    @classmethod
    def build(cls, kind: Repr, smiles: Iterable[str]) -> MolTokenizer:
        """Build the vocabulary from a corpus of SMILES.

        For SELFIES the semantically robust SELFIES alphabet is added so that
        symbols absent from the corpus subset do not become ``<unk>``.
        """
        tok = cls(kind, Vocab(list(SPECIALS)))
        extra: set[str] = set()
        if kind == "selfies":
            import selfies as sf

            extra = set(sf.get_semantic_robust_alphabet())
        return cls(kind, Vocab.build((tok.tokenize(s) for s in smiles), extra))

    def to_dict(self) -> dict:
        return {"kind": self.kind, **self.vocab.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> MolTokenizer:
        return cls(d["kind"], Vocab.from_dict(d))

    def save(self, path: str | Path) -> None:
        """Write the tokenizer (kind + token list) as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> MolTokenizer:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    # --- strings <-> tokens <-> ids -------------------------------------------------------
    def tokenize(self, smiles: str) -> list[str]:
        """SMILES -> tokens of this representation."""
        if self.kind == "smiles":
            return tokenize_smiles(smiles)
        return smiles_to_selfies_tokens(smiles)

    def detokenize(self, tokens: Sequence[str]) -> str:
        """Tokens -> SMILES (canonical when RDKit parses it, raw string otherwise)."""
        text = "".join(tokens)
        if self.kind == "selfies":
            import selfies as sf

            try:
                text = sf.decoder(text) or ""
            except Exception:  # noqa: BLE001 - malformed SELFIES strings are rare; any decoder error means no molecule
                text = ""
        can = canonicalize(text)
        return can if can is not None else text

    def encode(self, smiles: str, add_special: bool = True) -> list[int]:
        """SMILES -> ids, wrapped as ``<bos> ... <eos>`` when ``add_special``."""
        ids = self.vocab.encode(self.tokenize(smiles))
        return [BOS_ID, *ids, EOS_ID] if add_special else ids

    def decode(self, ids: Iterable[int]) -> str:
        """Ids (optionally starting with ``<bos>``, cut at ``<eos>``) -> SMILES."""
        return self.detokenize(self.vocab.decode(ids))

    def __len__(self) -> int:
        return len(self.vocab)

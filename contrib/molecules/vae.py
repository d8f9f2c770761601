"""Sequence VAE over SMILES / SELFIES tokens, with a 128-dimensional latent space.

Architecture (defaults, about 0.7 M parameters so that CPU training is feasible):

* shared token embedding (64),
* encoder: bidirectional GRU (160 per direction) over ``<bos> ... <eos>``;
  the two final hidden states -> ``mu`` and ``logvar`` in R^128,
* decoder: GRU (256) whose initial hidden state is ``tanh(W z)`` and whose
  input at every step is ``[embedding(previous token), z]``; linear head to
  the vocabulary.

:class:`MoleculeVAE` bundles the network with its :class:`MolTokenizer` and
offers the string-level API used by the molecular JKO problem:
``encode(smiles) -> (N, 128)`` posterior means and ``decode(z) -> SMILES``.

Files are written with ``torch.save`` of a plain dict (state_dict, config,
tokenizer as lists/str) and read with ``torch.load(weights_only=True)``, so
loading never unpickles code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from .tokens import BOS_ID, EOS_ID, PAD_ID, MolTokenizer

FORMAT = "jkoflow.molecules.vae/1"
DECODINGS: tuple[str, ...] = ("greedy", "sample", "valid_first")
"""Decoding modes of :meth:`MoleculeVAE.decode`."""


@dataclass
class VAEConfig:
    """Hyper-parameters of :class:`SeqVAE`."""

    vocab_size: int
    embed_dim: int = 64
    enc_hidden: int = 160
    dec_hidden: int = 256
    latent_dim: int = 128
    max_len: int = 100


def pad_batch(seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists with ``<pad>``: returns ``(ids (B, T), lengths (B,))``."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((len(seqs), int(lengths.max())), PAD_ID, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return out, lengths


class SeqVAE(nn.Module):
    """GRU encoder -> (mu, logvar) in R^latent -> z-conditioned GRU decoder."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=PAD_ID)
        self.encoder = nn.GRU(cfg.embed_dim, cfg.enc_hidden, batch_first=True, bidirectional=True)
        self.to_mu = nn.Linear(2 * cfg.enc_hidden, cfg.latent_dim)
        self.to_logvar = nn.Linear(2 * cfg.enc_hidden, cfg.latent_dim)
        self.z_to_h = nn.Linear(cfg.latent_dim, cfg.dec_hidden)
        self.decoder = nn.GRU(cfg.embed_dim + cfg.latent_dim, cfg.dec_hidden, batch_first=True)
        self.head = nn.Linear(cfg.dec_hidden, cfg.vocab_size)

    # --- encoder ----------------------------------------------------------------------
    def encode(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``ids (B, T)`` -> ``(mu, logvar)``, each ``(B, latent_dim)``."""
        packed = pack_padded_sequence(self.embed(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h = self.encoder(packed)  # (2, B, H)
        h = torch.cat([h[0], h[1]], dim=-1)
        return self.to_mu(h), self.to_logvar(h)

    @staticmethod
    def reparameterize(
        mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        return mu + eps * torch.exp(0.5 * logvar)

    # --- decoder ----------------------------------------------------------------------
    def decode_logits(self, z: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Teacher-forced decoder: ``inputs (B, T)`` (starting with ``<bos>``) -> logits (B, T, V)."""
        h0 = torch.tanh(self.z_to_h(z)).unsqueeze(0)
        emb = self.embed(inputs)
        x = torch.cat([emb, z.unsqueeze(1).expand(-1, emb.shape[1], -1)], dim=-1)
        out, _ = self.decoder(x, h0)
        return self.head(out)

    def forward(
        self, ids: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(logits for ids[:, 1:], mu, logvar)``."""
        mu, logvar = self.encode(ids, lengths)
        z = self.reparameterize(mu, logvar, generator)
        return self.decode_logits(z, ids[:, :-1]), mu, logvar

    @torch.no_grad()
    def generate(
        self,
        z: torch.Tensor,
        greedy: bool = True,
        temperature: float = 1.0,
        max_len: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Autoregressive decoding from ``z (B, latent)``; returns ids ``(B, L)`` (no ``<bos>``).

        Sequences are padded with ``<pad>`` after their ``<eos>``.
        """
        max_len = max_len or self.cfg.max_len
        B = z.shape[0]
        h = torch.tanh(self.z_to_h(z)).unsqueeze(0)
        tok = torch.full((B,), BOS_ID, dtype=torch.long, device=z.device)
        done = torch.zeros(B, dtype=torch.bool, device=z.device)
        out = torch.full((B, max_len), PAD_ID, dtype=torch.long, device=z.device)
        for t in range(max_len):
            x = torch.cat([self.embed(tok), z], dim=-1).unsqueeze(1)
            o, h = self.decoder(x, h)
            logits = self.head(o[:, 0])
            logits[:, BOS_ID] = -float("inf")
            logits[:, PAD_ID] = -float("inf")
            if greedy:
                tok = logits.argmax(-1)
            else:
                probs = F.softmax(logits / temperature, dim=-1)
                tok = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            tok = torch.where(done, torch.full_like(tok, PAD_ID), tok)
            out[:, t] = tok
            done |= tok == EOS_ID
            if bool(done.all()):
                return out[:, : t + 1]
        return out


def vae_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    kl_weight: float = 1e-3,
    free_bits: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-molecule loss ``recon + kl_weight * KL``.

    ``recon`` is the token cross-entropy summed over each sequence (pad
    ignored) and averaged over the batch; ``KL`` is the analytic KL to
    N(0, I) summed over latent dims.  With ``free_bits > 0`` each dimension's
    batch-mean KL is clamped from below at ``free_bits`` nats.
    """
    B = targets.shape[0]
    ce = (
        F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=PAD_ID, reduction="sum"
        )
        / B
    )
    kl_dim = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean(0)  # (latent,)
    kl_term = torch.clamp(kl_dim, min=free_bits).sum() if free_bits > 0 else kl_dim.sum()
    loss = ce + kl_weight * kl_term
    with torch.no_grad():
        mask = targets != PAD_ID
        acc = ((logits.argmax(-1) == targets) & mask).sum() / mask.sum()
    return loss, {
        "loss": float(loss.detach()),
        "recon": float(ce.detach()),
        "kl": float(kl_dim.detach().sum()),
        "kl_per_dim": float(kl_dim.detach().mean()),
        "token_acc": float(acc),
    }


class MoleculeVAE:
    """String-level wrapper: a :class:`SeqVAE` plus its :class:`MolTokenizer`."""

    def __init__(self, model: SeqVAE, tokenizer: MolTokenizer) -> None:
        self.model = model
        self.tokenizer = tokenizer

    @classmethod
    def create(cls, tokenizer: MolTokenizer, **cfg_kwargs: int) -> MoleculeVAE:
        """Fresh (untrained) VAE for ``tokenizer``; ``cfg_kwargs`` override :class:`VAEConfig`."""
        return cls(SeqVAE(VAEConfig(vocab_size=len(tokenizer), **cfg_kwargs)), tokenizer)

    @property
    def latent_dim(self) -> int:
        return self.model.cfg.latent_dim

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # --- string API -------------------------------------------------------------------
    def to_ids(self, smiles: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenize SMILES to a padded id batch ``(ids, lengths)``."""
        return pad_batch([self.tokenizer.encode(s) for s in smiles])

    @torch.no_grad()
    def encode(self, smiles: Sequence[str], batch_size: int = 512) -> torch.Tensor:
        """Posterior means ``mu`` of ``smiles``: float tensor ``(N, latent_dim)``."""
        was = self.model.training
        self.model.eval()
        chunks = []
        for i in range(0, len(smiles), batch_size):
            ids, lengths = self.to_ids(smiles[i : i + batch_size])
            chunks.append(self.model.encode(ids, lengths)[0])
        self.model.train(was)
        if not chunks:
            return torch.zeros(0, self.latent_dim)
        return torch.cat(chunks)

    @torch.no_grad()
    def decode(
        self,
        z: torch.Tensor,
        greedy: bool = True,
        temperature: float = 1.0,
        batch_size: int = 512,
        generator: torch.Generator | None = None,
        mode: str | None = None,
        k: int = 16,
        seed: int = 0,
    ) -> list[str]:
        """Decode latent points ``z (N, latent_dim)`` to (canonical when valid) SMILES.

        ``mode`` (see :data:`DECODINGS`; ``None`` keeps the older ``greedy`` flag):

        * ``"greedy"``: one argmax decoding per point (the paper's single decoding),
        * ``"sample"``: one decoding with tokens drawn at ``temperature``,
        * ``"valid_first"``: the greedy decoding where RDKit parses it; elsewhere up to ``k``
          draws at ``temperature``, keeping the first that parses (the greedy string if none
          does). It never looks at QED or any other property, only at validity.

        ``"sample"`` and ``"valid_first"`` draw from ``generator`` or, without one, from a
        generator seeded with ``seed``, so the same call gives the same molecules. Invalid
        decodings come back as the raw string (possibly empty); SELFIES decodings are valid by
        construction.
        """
        if mode is not None:
            if mode not in DECODINGS:
                raise ValueError(f"decoding mode {mode!r}: expected one of {DECODINGS}")
            if mode != "greedy" and not temperature > 0:
                raise ValueError(f"temperature must be > 0 for mode {mode!r}, got {temperature}")
            if mode == "valid_first" and k < 1:
                raise ValueError(f"valid_first needs k >= 1 draws, got k={k}")
            if mode != "greedy" and generator is None:
                generator = torch.Generator().manual_seed(int(seed))
            if mode == "valid_first":
                return self._decode_valid_first(z, temperature, k, batch_size, generator)
            greedy = mode == "greedy"
        was = self.model.training
        self.model.eval()
        z = torch.as_tensor(z, dtype=torch.float32)
        out: list[str] = []
        for i in range(0, z.shape[0], batch_size):
            ids = self.model.generate(
                z[i : i + batch_size], greedy=greedy, temperature=temperature, generator=generator
            )
            out += [self.tokenizer.decode(row.tolist()) for row in ids]
        self.model.train(was)
        return out

    def _decode_valid_first(
        self,
        z: torch.Tensor,
        temperature: float,
        k: int,
        batch_size: int,
        generator: torch.Generator | None,
    ) -> list[str]:
        from .tokens import canonicalize

        z = torch.as_tensor(z, dtype=torch.float32)
        out = self.decode(z, greedy=True, batch_size=batch_size)
        todo = [i for i, s in enumerate(out) if canonicalize(s) is None]
        for _ in range(k):
            if not todo:
                break
            draws = self.decode(
                z[todo], greedy=False, temperature=temperature, batch_size=batch_size, generator=generator
            )
            left = []
            for i, s in zip(todo, draws):
                c = canonicalize(s)
                if c is None:
                    left.append(i)
                else:
                    out[i] = c
            todo = left
        return out

    def sample_prior(
        self, n: int, generator: torch.Generator | None = None, greedy: bool = True
    ) -> list[str]:
        """Decode ``n`` draws z ~ N(0, I)."""
        z = torch.randn(n, self.latent_dim, generator=generator)
        return self.decode(z, greedy=greedy, generator=generator)

    # --- persistence ------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain dict (tensors, str, int, lists) suitable for ``torch.save``."""
        return {
            "format": FORMAT,
            "config": asdict(self.model.cfg),
            "tokenizer": self.tokenizer.to_dict(),
            "state_dict": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> MoleculeVAE:
        if d.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file (format={d.get('format')!r})")
        model = SeqVAE(VAEConfig(**d["config"]))
        model.load_state_dict(d["state_dict"])
        model.eval()
        return cls(model, MolTokenizer.from_dict(d["tokenizer"]))

    def save(self, path: str | Path) -> None:
        torch.save(self.to_dict(), str(path))

    @classmethod
    def load(cls, path: str | Path) -> MoleculeVAE:
        """Load a model file or a training checkpoint (its ``"model"`` entry)."""
        d = torch.load(str(path), map_location="cpu", weights_only=True)
        if "model" in d and "format" not in d:
            d = d["model"]
        return cls.from_dict(d)


def load_vae(path: str | Path) -> MoleculeVAE:
    """Load a :class:`MoleculeVAE` saved by :meth:`MoleculeVAE.save` or by training."""
    return MoleculeVAE.load(path)

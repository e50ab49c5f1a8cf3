"""Deterministic text features without a downloaded model: words hashed into a seeded table.

A stand-in for BERT token states when no pretrained weights are available (the mini profile):
the text is lower-cased and split into word tokens (``TOKEN_RE``: a ``<placeholder>`` such as
``<user>``, a run of word characters, or one punctuation mark); each token goes to one of
``buckets`` rows by a keyed BLAKE2b hash (stable across processes and Python versions, unlike
the salted built-in ``hash``), and the row is a fixed N(0, 1/dim) vector drawn from
``numpy.random.default_rng(seed)``. The same text always gives the same [L, dim] array.
"""

from __future__ import annotations

import functools
import hashlib
import re

import numpy as np

__all__ = ["TOKEN_RE", "embedding_table", "hashed_embeddings", "token_bucket", "tokenize"]

TOKEN_RE = re.compile(r"<\w+>|\w+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens of ``text`` (see TOKEN_RE), in order."""
    return TOKEN_RE.findall(text.lower())


def token_bucket(token: str, buckets: int) -> int:
    """Row of ``token`` in a table of ``buckets`` rows: BLAKE2b-64 of its UTF-8 bytes mod buckets."""
    digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8, person=b"mmbalance-tok").digest()
    return int.from_bytes(digest, "little") % buckets


@functools.lru_cache(maxsize=4)
def embedding_table(buckets: int, dim: int, seed: int) -> np.ndarray:
    """The fixed table float32 [buckets, dim], entries N(0, 1/dim) (rows of about unit norm)."""
    if buckets < 1 or dim < 1:
        raise ValueError(f"buckets and dim must be >= 1, got {buckets}, {dim}")
    table = np.random.default_rng(seed).standard_normal((buckets, dim)) / np.sqrt(dim)
    table = table.astype(np.float32)
    table.flags.writeable = False  # shared by every call: a caller must not change it
    return table


def hashed_embeddings(text: str, *, buckets: int = 4096, dim: int = 32, seed: int = 0,
                      max_tokens: int | None = None) -> np.ndarray:
    """float32 [L, dim]: one table row per token of the first ``max_tokens`` (None = all);
    a text without any token gives one zero step [1, dim]."""
    tokens = tokenize(text)[:max_tokens]
    if not tokens:
        return np.zeros((1, dim), dtype=np.float32)
    rows = [token_bucket(t, buckets) for t in tokens]
    return embedding_table(buckets, dim, seed)[rows].copy()

"""Deterministic WebDataset shards: writing and reading."""

from mmbalance.shards.read import decode_sample, iter_samples, read_index, shard_urls
from mmbalance.shards.write import FIXED_MTIME, encode_sample, write_index, write_shards

__all__ = ["FIXED_MTIME", "decode_sample", "encode_sample", "iter_samples", "read_index", "shard_urls", "write_index", "write_shards"]

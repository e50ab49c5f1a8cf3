"""Dataset adapters: native layouts -> Clip records, plus the dataset registry."""

from mmbalance.datasets import cremad  # noqa: F401  (registers "cremad")
from mmbalance.datasets.base import (
    Clip,
    DatasetAdapter,
    DatasetLayoutError,
    Skip,
    get_dataset,
    list_datasets,
    register_dataset,
)

__all__ = [
    "Clip",
    "DatasetAdapter",
    "DatasetLayoutError",
    "Skip",
    "get_dataset",
    "list_datasets",
    "register_dataset",
]

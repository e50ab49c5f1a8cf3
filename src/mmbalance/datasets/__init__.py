"""Dataset adapters: native layouts -> Clip records, plus the dataset registry."""

from mmbalance.plugins import import_submodules
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

# One adapter per module; importing them registers them.
import_submodules(__name__)

import pytest

from mmbalance.datasets.base import DATASETS
from mmbalance.datasets.mini import GENERATORS
from mmbalance.methods import METHODS
from mmbalance.models import ENCODERS, FUSIONS
from mmbalance.registry import Registry


def test_duplicate_name_raises():
    reg = Registry("thing")
    reg.register("a")(object)
    with pytest.raises(ValueError, match="'a' is already registered"):
        reg.register("a")(object)


def test_unknown_name_lists_choices():
    reg = Registry("thing")
    reg.register("b")(object)
    reg.register("a")(object)
    with pytest.raises(KeyError, match="unknown thing 'zzz'; choices: a, b"):
        reg.get("zzz")


@pytest.mark.parametrize("registry", [METHODS, ENCODERS, FUSIONS, DATASETS, GENERATORS])
def test_project_registries_reject_unknown(registry):
    with pytest.raises(KeyError, match="choices: "):
        registry.get("no-such-name")


def test_params_method_blocks_match_registry():
    from pathlib import Path

    from mmbalance.params import load_params

    params = load_params(Path(__file__).parents[1] / "params.yaml")
    own = {name for name, block in params["methods"].items() if "method" not in (block or {})}
    assert own == set(METHODS.names())  # one block per registered method …
    for name, block in params["methods"].items():  # … plus variant blocks naming a registered method
        if "method" in (block or {}):
            assert block["method"] in METHODS.names(), name
            assert "__" in name, f"variant run {name!r} should be named <method>__<variant>"
    for dataset, names in params["benchmark"].items():
        assert dataset in params["datasets"], dataset
        assert set(names) <= set(params["methods"]), dataset  # registered methods and variant runs

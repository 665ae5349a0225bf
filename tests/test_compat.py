"""Files written under the names of older versions still load (until
`tag_keras._compat.REMOVED_IN`), and the old argument names are refused
with the new ones."""

import keras
import pytest

import tag_keras
from tag_keras import _compat
from tag_keras import mtl
from tag_keras.measure import sources
from tag_keras.select import document


def _renamed_back(config, new, old, value):
    config = dict(config)
    del config[new]
    config[old] = value
    return config


@pytest.mark.parametrize("first_order, method", [(True, "first_order"),
                                                 (False, "lookahead")])
def test_it_mtl_saved_with_first_order_loads(first_order, method):
    config = _renamed_back(mtl.ITMTL().get_config(), "affinity_method",
                           "first_order", first_order)
    assert mtl.ITMTL.from_config(config).affinity_method == method


def test_svd_weights_saved_with_layer_loads():
    config = _renamed_back(mtl.SVDTaskWeights().get_config(),
                           "representation_layer", "layer", "trunk")
    assert mtl.SVDTaskWeights.from_config(
        config).representation_layer == "trunk"


def test_group_state_saved_with_num_groups_loads():
    config = _renamed_back(
        sources.GroupAffinityState(3, 2).get_config(), "num_sources",
        "num_groups", 4)
    assert sources.GroupAffinityState.from_config(config).num_sources == 4


def test_model_saved_with_strategy_loads():
    inputs = keras.Input((3,))
    model = tag_keras.TaskAffinityModel(
        inputs=inputs, outputs={"a": keras.layers.Dense(1)(inputs)},
        training_method=mtl.UncertaintyWeights())
    config = model.get_config()
    config = _renamed_back(config, "training_method", "strategy",
                           config["training_method"])
    restored = tag_keras.TaskAffinityModel.from_config(config)
    assert isinstance(restored.training_method, mtl.UncertaintyWeights)


@pytest.mark.parametrize("construct, old, new", [
    (lambda: mtl.ITMTL(first_order=True), "first_order", "affinity_method"),
    (lambda: mtl.SVDTaskWeights(layer="x"), "layer", "representation_layer"),
    (lambda: sources.GroupAffinityState(num_sources=2, num_tasks=2,
                                        num_groups=3),
     "num_groups", "num_sources"),
    (lambda: tag_keras.TaskAffinityModel(strategy=mtl.UncertaintyWeights()),
     "strategy", "training_method"),
])
def test_old_argument_names_are_refused_with_the_new(construct, old, new):
    with pytest.raises(TypeError, match=rf"\({old}=\.\.\.\)` was renamed "
                       rf"`{new}=`.*{_compat.REMOVED_IN}"):
        construct()


def test_a_config_with_both_names_keeps_the_new():
    assert _compat.renamed_config(
        "SVDTaskWeights", {"layer": "old", "representation_layer": "new"}
    ) == {"representation_layer": "new"}
    assert _compat.renamed_config("Unknown", {"layer": 1}) == {"layer": 1}


def test_the_groups_documents_verdict_reads_as_affinity_structure():
    assert document.affinity_structure({"verdict": "split"}) == "stable"
    assert document.affinity_structure(
        {"verdict": "keep together"}) == "unclear"
    assert document.affinity_structure(
        {"affinity_structure": "stable", "verdict": "keep together"}
    ) == "stable"
    assert document.affinity_structure({}) == ""

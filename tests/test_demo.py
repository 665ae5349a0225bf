"""The README's demo runs end to end and writes its files."""

import json

import pandas as pd

from experiments.lib import demo


def test_demo_writes_affinity_and_groups(tmp_path):
    results = demo.run(str(tmp_path), epochs=1, samples=256, seed=0)
    matrix = pd.read_csv(tmp_path / "affinity" / "affinity.csv",
                         index_col="source")
    assert list(matrix.index) == list(matrix.columns)
    assert len(matrix) == 7
    groups = json.loads((tmp_path / "groups.json").read_text())
    assert [r["num_groups"] for r in groups["results"]] == [2, 3]
    for result, grouping in zip(groups["results"], results):
        assert set(result["serve"]) == set(matrix.index)
        assert result["score"] == grouping.score
    assert groups["planted_clusters"]["noise"] is None

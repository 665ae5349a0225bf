"""Groupings against exhaustive search (`python -m
experiments.benchmarks.grouping_quality`).

`__main__`: the binary; `work`: cached units of work (task sets, seeds,
measuring variants); `report`: evaluation; `markdown`: text; `plots`:
figures; `write`: the files.
"""

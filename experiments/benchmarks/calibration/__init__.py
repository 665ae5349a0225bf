"""Can a grouping's affinity structure be trusted? (`python -m
experiments.benchmarks.calibration`).

`__main__`: the binary; `report`: the analysis on a de-noised truth;
`write`: the files.
"""

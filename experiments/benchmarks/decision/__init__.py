"""Does the split / keep-together decision hold? (issue 26)

`python -m experiments.benchmarks.decision` judges four decision-makers
(the affinity structure read as a decision, the validated decision of
`tag_keras.train`, "always split" and "always keep together") on task sets
where the all-task network wins and where it loses, against a truth of
networks trained under separate seeds; `lib` does the work, `report` the
summaries.
"""

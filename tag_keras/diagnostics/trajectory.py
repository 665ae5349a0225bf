"""The measures a trajectory logger can record, by name.

`tag_keras.callbacks.TrajectoryLogger` records them every n epochs;
`tag_keras.diagnostics.read_trajectory` reads its file back.
"""

#: The measure groups `TrajectoryLogger(measures=...)` accepts.
MEASURES = ("loss", "error", "conflict", "sharpness", "fisher", "coherence")

"""scaling: measure, fit and check the scaling laws of transformer language models.

One folder per stage, each handing the next its files: config/ (every field of a run, typed),
data/ (corpus → token store), model/ (the transformer, its N and FLOPs), train/ (one run → its
run directory), experiments/ (sweeps of runs), design/ (an isoFLOP experiment made from the
corpus and the time given), laws/ (fits.json), report/ (report.md and figures). pipeline.py
chains them; cli.py is the `scaling` command over them.
"""

__version__ = "0.1.0"

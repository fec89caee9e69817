"""Scaling-law forms, fits, intervals, allocation and extrapolation checks (numpy/scipy only).

forms.py       every law as a pure function, and the published constants (presets)
fit.py         the fitters: log-space least squares, variable projection, Chinchilla's Huber fit
registry.py    laws by name: columns, fitter, predictor, published values
uncertainty.py bootstrap over runs, percentile intervals, the held-out extrapolation check
optimum.py     compute-optimal N, D for a budget; least compute for a target loss
approaches.py  Chinchilla Approaches 1 and 2, the frontier, the B_crit(L) fit
io.py          points from run directories or a CSV; results to JSON
"""

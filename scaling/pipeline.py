"""The pipelines the `scaling` command and the notebooks both call, each stage handing the next
its files:

  quickstart      tokenize and design (store/, pilot/, design.json) → the isoFLOP sweep (one
                  folder per run) → a size more on any lopsided profile (extra/) → the held-out
                  check → the report (fits.json, report.md, figures);
  heldout_check   fit an isoFLOP sweep, train its predicted optimum and the neighbours N/2 and 2N
                  at a budget past the fitted ones (heldout/), and fit again with their check.
"""

from __future__ import annotations

import time
from pathlib import Path

from scaling.config.load import apply_overrides
from scaling.errors import UserError


def heldout_check(cfg, sweep: Path, n_boot: int = 1000, factor: float = 3.0,
                  target_flop: float = 0.0, overwrite: bool = False, verbose: bool = True,
                  processes: int = 1) -> dict:
  """Fits the sweep, trains the predicted optimum and its neighbours at factor × the largest
  budget (in <sweep>/heldout/), and fits again with their check; returns fits.json."""
  from scaling.experiments import isoflop
  from scaling.experiments.sweep import run_points
  from scaling.laws import sweepfit
  if not factor > 1:
    raise UserError(f"--factor must be above 1 (a budget beyond the fitted ones), got {factor}")
  if target_flop < 0:
    raise UserError(f"the budget to answer for must be a positive number of FLOP, got "
                    f"{target_flop}")
  # The prediction needs the central fit only; the intervals come with the second fit.
  doc = sweepfit.fit_isoflop_sweep(str(sweep), min(n_boot, 20), check_factor=factor,
                                   target_flop=target_flop)
  pred = doc["headline"]["check_prediction"]
  print(f"held-out budget C = {pred['C']:.3g} FLOP: training the predicted optimum N = "
        f"{pred['N_opt']:.3g} and N/2, 2N (predicted loss {pred['loss']:.3f})", flush=True)
  run_points(isoflop.heldout_runs(cfg, pred["C"], pred["N_opt"]), overwrite, verbose,
             processes=processes)
  return sweepfit.fit_isoflop_sweep(str(sweep), n_boot, check_factor=factor,
                                    target_flop=target_flop)


def quickstart(out, data: str = "", minutes: float = 15.0, force: bool = False,
               budget_flop: float = 0.0, overwrite: bool = False, n_boot: int = 1000,
               verbose: bool = True, processes: int = 0, overrides=()) -> dict:
  """How big, how long, what loss, on `data` (default: the generated corpus) within `minutes`:
  every stage into the folder `out`; returns the report's result (its headline, fits.json and
  report.md paths) with the wall time in minutes. `processes` 0 is the machine's default
  (scaling/experiments/processes.py)."""
  from scaling.design import experiment
  from scaling.experiments import processes as processlib
  from scaling.experiments.sweep import run_sweep
  from scaling.report.render import make_report
  t0 = time.time()
  out = Path(out)
  cfg = apply_overrides(experiment.base_config(data), list(overrides))
  procs = processlib.resolve(processes, bool(cfg.distributed.enabled))
  experiment.make_design(cfg, out, minutes, force, verbose=True, processes=procs)
  cfg, made = experiment.sweep_config(out)
  run_sweep(cfg, overwrite=overwrite, verbose=verbose, processes=procs)
  experiment.widen_lopsided(out, overwrite, verbose, procs)
  heldout_check(cfg, out, n_boot, experiment.heldout_factor(made), budget_flop, overwrite,
                verbose, procs)
  result = make_report(str(out), n_boot=n_boot)
  return dict(result, minutes=(time.time() - t0) / 60)

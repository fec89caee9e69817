"""Fit inputs from run directories (through scaling/train/rundir.py) or a CSV of runs (result files
are written by scaling/files.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from scaling.errors import UserError
from scaling.laws import csvtable
from scaling.train import rundir
from scaling.train import summary as summarylib

def read_csv(path: Path, notes: list | None = None) -> dict[str, np.ndarray]:
  """The quantities of a CSV of runs (scaling/laws/csvtable.py); what was read how is appended
  to `notes`."""
  table = csvtable.read(path)
  if notes is not None:
    notes += table.notes
  return table.columns


def read_runs(path: Path, n_convention: str = "kaplan", loss_key: str = "final_eval_loss",
              with_curves: bool = False, flop_key: str = "kaplan_train") -> dict:
  """One point per finished run: N (by convention), D (tokens processed), D_data (distinct
  training tokens), C (Kaplan FLOP), S, B (tokens), loss; optionally smoothed learning curves."""
  runs = rundir.find_runs(path)
  if not runs:
    raise UserError(f"{path} holds no finished run (no summary.json); train or sweep first")
  rundir.check_comparable(runs, path)
  n_key = {"kaplan": "n_kaplan", "exact": "n_exact_nonemb", "total": "n_total"}[n_convention]
  cols = {k: [] for k in ("N", "N_total", "D", "D_data", "C", "S", "B", "loss", "name")}
  curves = []
  for run in runs:
    s = summarylib.read(run)
    loss = getattr(s, loss_key)
    if loss is None or not math.isfinite(loss):
      print(f"warning: skipping {run}: no finite {loss_key}")
      continue
    for k, v in (("N", s.count(n_key)), ("N_total", s.n_total), ("D", s.tokens),
                 ("D_data", s.d_train_tokens), ("C", s.flop_kaplan), ("S", s.steps),
                 ("B", s.batch_tokens), ("loss", loss), ("name", str(run))):
      cols[k].append(v)
    if with_curves:
      curves.append(learning_curve(run, s.count(n_key), s.flop_per_token[flop_key]))
  out = {k: (np.asarray(v) if k != "name" else v) for k, v in cols.items()}
  if with_curves:
    out["curves"] = curves
  return out


def learning_curve(run: Path, n: float, flop_per_token: float) -> dict:
  """Training loss (smoothed by rundir.loss_curve's one smoother) against compute
  C = flop_per_token·tokens (6·N for Kaplan's C = 6NBS, or a count with attention and logits)."""
  curve = rundir.loss_curve(run)
  return {"N": n, "C": flop_per_token * curve["tokens"], "loss": curve["smoothed"],
          "name": str(run)}


def curves_from_csv(columns: dict, flop_per_param_token: float = 6.0) -> list[dict]:
  """Learning curves from a CSV of curves (columns run, N, D = tokens so far, loss; C = 6·N·D
  unless a C column is given), one per run, sorted by tokens: what Approach 1 takes from run
  directories."""
  missing = [c for c in ("run", "N", "D") if c not in columns]
  if missing:
    raise UserError(f"a CSV of learning curves needs the columns run, N, D (or tokens) and loss; "
                    f"missing {', '.join(missing)}")
  curves = []
  for run in dict.fromkeys(columns["run"]):
    sel = columns["run"] == run
    n = np.unique(columns["N"][sel])
    if len(n) != 1:
      raise UserError(f"run {run!r} of the CSV has more than one N: {n.tolist()}")
    order = np.argsort(columns["D"][sel])
    c = (columns["C"][sel] if "C" in columns
         else flop_per_param_token * n[0] * columns["D"][sel])[order]
    curves.append({"N": float(n[0]), "C": c, "loss": columns["loss"][sel][order],
                   "name": str(run)})
  return curves


def load(path: str, n_convention: str = "kaplan", loss_key: str = "final_eval_loss",
         with_curves: bool = False, flop_key: str = "kaplan_train",
         notes: list | None = None) -> dict:
  p = Path(path)
  if not p.exists():
    raise UserError(f"{path} does not exist; give a CSV file or a directory of runs")
  if p.is_file():
    return read_csv(p, notes)
  return read_runs(p, n_convention, loss_key, with_curves, flop_key)


def to_jsonable(obj):
  if isinstance(obj, dict):
    return {str(k): to_jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [to_jsonable(v) for v in obj]
  if isinstance(obj, np.ndarray):
    return to_jsonable(obj.tolist())
  if isinstance(obj, (np.floating, float)):
    return float(obj) if math.isfinite(obj) else None
  if isinstance(obj, (np.integer,)):
    return int(obj)
  return obj

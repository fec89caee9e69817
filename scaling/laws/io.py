"""Fit inputs from run directories (summary.json, metrics.jsonl) or a CSV of runs."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from scaling.errors import UserError

# CSV column names accepted for each quantity (case-insensitive).
_ALIASES = {"N": ("n", "params", "n_params"), "D": ("d", "tokens", "data"), "loss": ("loss", "l"),
            "C": ("c", "flops", "compute"), "S": ("s", "steps"), "B": ("b", "batch", "batch_tokens")}


def read_csv(path: Path) -> dict[str, np.ndarray]:
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  if not rows:
    raise UserError(f"{path} has no data rows")
  header = {h.strip().lower(): h for h in rows[0].keys() if h is not None}
  columns = {}
  for name, aliases in _ALIASES.items():
    found = next((header[a] for a in aliases if a in header), None)
    if found is None:
      continue
    try:
      columns[name] = np.array([float(r[found]) for r in rows])
    except (TypeError, ValueError):
      raise UserError(f"{path}: column {found!r} holds a value that is not a number") from None
  if "loss" not in columns:
    raise UserError(f"{path} has no 'loss' column (columns: {', '.join(rows[0].keys())})")
  return columns


def find_runs(path: Path) -> list[Path]:
  """Run directories (holding summary.json) at or under path, sorted."""
  if (path / "summary.json").is_file():
    return [path]
  return sorted(p.parent for p in path.rglob("summary.json"))


def read_runs(path: Path, n_convention: str = "kaplan", loss_key: str = "final_eval_loss",
              with_curves: bool = False, flops_key: str = "kaplan_train") -> dict:
  """One point per finished run: N (by convention), D (tokens processed), D_data (distinct
  training tokens), C (Kaplan FLOP), S, B (tokens), loss; optionally smoothed learning curves."""
  runs = find_runs(path)
  if not runs:
    raise UserError(f"{path} holds no finished run (no summary.json); train or sweep first")
  n_key = {"kaplan": "n_kaplan", "exact": "n_exact_nonemb", "total": "n_total"}[n_convention]
  cols = {k: [] for k in ("N", "N_total", "D", "D_data", "C", "S", "B", "loss", "name")}
  curves = []
  for run in runs:
    s = json.loads((run / "summary.json").read_text())
    loss = s.get(loss_key)
    if loss is None or not math.isfinite(loss):
      print(f"warning: skipping {run}: no finite {loss_key}")
      continue
    for k, v in (("N", s[n_key]), ("N_total", s["n_total"]), ("D", s["tokens"]),
                 ("D_data", s["d_train_tokens"]), ("C", s["flops_kaplan"]), ("S", s["steps"]),
                 ("B", s["batch_tokens"]), ("loss", loss), ("name", str(run))):
      cols[k].append(v)
    if with_curves:
      curves.append(learning_curve(run, s[n_key], s["flops_per_token"][flops_key]))
  out = {k: (np.asarray(v) if k != "name" else v) for k, v in cols.items()}
  if with_curves:
    out["curves"] = curves
  return out


def learning_curve(run: Path, n: float, flops_per_token: float, smooth: int = 20) -> dict:
  """Training loss against compute (flops_per_token·tokens: 6·N for Kaplan's C = 6NBS, or a
  count with attention and logits), smoothed by a moving average over `smooth` steps."""
  records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
  tokens = np.array([r["tokens"] for r in records], float)
  loss = np.array([r["loss"] if r["loss"] is not None else np.nan for r in records], float)
  k = max(1, min(smooth, len(loss) // 5))
  kernel = np.ones(k) / k
  smoothed = np.convolve(loss, kernel, mode="valid")
  return {"N": n, "C": flops_per_token * tokens[k - 1:], "loss": smoothed, "name": str(run)}


def load(path: str, n_convention: str = "kaplan", loss_key: str = "final_eval_loss",
         with_curves: bool = False, flops_key: str = "kaplan_train") -> dict:
  p = Path(path)
  if not p.exists():
    raise UserError(f"{path} does not exist; give a CSV file or a directory of runs")
  if p.is_file():
    return read_csv(p)
  return read_runs(p, n_convention, loss_key, with_curves, flops_key)


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

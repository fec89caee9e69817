"""Which law the critical batch follows: against the loss or against the tokens trained.

  loss    B_crit(L) = B*/L^(1/α_B)          (Kaplan 2020, arXiv 2001.08361, eq. 1.4)
  tokens  B_crit(D) = B_D·D^β               (Zhang et al. 2024, arXiv 2410.21676, §4; Bergsma
                                             et al. 2025, arXiv 2505.13738, §3: CBS grows with D,
                                             not with N)
Both are lines in log–log space. Each is judged by its error on the measurements of a model size
left out of its fit (leave one size out): a law that holds across sizes predicts the new size.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from scaling.errors import UserError

LAWS = {"loss": "train_loss", "tokens": "tokens"}   # law → the point's x (cbs.analyze_size rows)


def fit_line(x, b) -> dict:
  """log b = c + e·log x by least squares: {'exponent', 'coef'} (b = coef·x^exponent)."""
  e, c = np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(b, float)), 1)
  return {"exponent": float(e), "coef": float(math.exp(c))}


def predict(law: dict, x) -> np.ndarray:
  return law["coef"] * np.asarray(x, float) ** law["exponent"]


def rms_log_error(law: dict, x, b) -> float:
  """Root-mean-square of ln(predicted/measured): 0.1 is about a 10 % error."""
  return float(np.sqrt(np.mean(np.log(predict(law, x) / np.asarray(b, float)) ** 2)))


def compare(points_by_size: dict, key: str = "B_crit") -> dict:
  """Both laws fitted on all points, and their leave-one-size-out errors. `points_by_size`: size
  name → rows with train_loss, tokens and `key` (rows without a value are left out)."""
  clean = {size: [r for r in rows if r.get(key)] for size, rows in points_by_size.items()}
  clean = {size: rows for size, rows in clean.items() if rows}
  everything = [r for rows in clean.values() for r in rows]
  out = {"n_points": len(everything), "n_sizes": len(clean), "laws": {}}
  for law, x_key in LAWS.items():
    if len(everything) < 3:
      break
    x = [r[x_key] for r in everything]
    b = [r[key] for r in everything]
    entry = {"fit": fit_line(x, b), "rms_log_error_in_fit": None, "heldout": {}}
    entry["rms_log_error_in_fit"] = rms_log_error(entry["fit"], x, b)
    if law == "loss":             # the exponent as Kaplan writes it
      entry["alpha_B"] = -1.0 / entry["fit"]["exponent"] if entry["fit"]["exponent"] else None
    for size, rows in clean.items():
      rest = [r for s, rr in clean.items() if s != size for r in rr]
      if len(rest) < 2 or len({r[x_key] for r in rest}) < 2:
        continue
      held = fit_line([r[x_key] for r in rest], [r[key] for r in rest])
      entry["heldout"][size] = rms_log_error(held, [r[x_key] for r in rows],
                                             [r[key] for r in rows])
    errs = list(entry["heldout"].values())
    entry["heldout_rms_log_error"] = float(np.sqrt(np.mean(np.square(errs)))) if errs else None
    out["laws"][law] = entry
  held = {law: e["heldout_rms_log_error"] for law, e in out["laws"].items()
          if e["heldout_rms_log_error"] is not None}
  out["better_heldout"] = min(held, key=held.get) if len(held) == 2 else None
  return out


def load_loss_law(path: str) -> dict:
  """A measured B_crit(L) = B*/L^(1/α_B) (Kaplan 2020 eq. 1.4) from a batch sweep's bsweep.json
  (its bcrit_law) or a branched run's cbs.json (its loss law): {'alpha_B', 'B_star'}."""
  p = Path(path)
  if p.is_dir():
    p = next((p / n for n in ("bsweep.json", "cbs.json") if (p / n).is_file()), p / "bsweep.json")
  try:
    doc = json.loads(p.read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise UserError(f"--batch-law {path}: cannot read it ({e})") from None
  if "bcrit_law" in doc:
    if not doc["bcrit_law"]:
      raise UserError(f"--batch-law {path}: the sweep fitted no B_crit(L) law")
    return {k: float(doc["bcrit_law"]["params"][k]) for k in ("alpha_B", "B_star")}
  law = (doc.get("laws") or {}).get("laws", {}).get("loss")
  if not law or not law.get("alpha_B"):
    raise UserError(f"--batch-law {path}: neither a bsweep.json with a bcrit_law nor a cbs.json "
                    "with a loss law")
  return {"alpha_B": float(law["alpha_B"]), "B_star": float(law["fit"]["coef"])}

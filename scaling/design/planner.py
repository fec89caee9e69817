"""The design stage's plan and its file: an isoFLOP experiment made from what was measured on the
user's corpus and machine (scaling/design/pilot.py), written to <sweep>/design.json before any of
the sweep is trained, and read back, validated, by `scaling sweep --design`. This module owns
design.json.

Every choice comes from a measurement, and design.json keeps the measurement beside it:
  learning rate  the multiple of Kaplan's LR(N) the pilot's LR probe found best on this corpus,
                 at the probe's length; past it the stable rate falls as 1/√t (scaling/train/optim.py);
  phase          the compute where the pilot's best run crosses below the corpus's bigram loss: a
                 law fitted on runs that predict mostly from the previous token does not
                 extrapolate past the change of phase, so the fitted budgets start past it;
  budgets        `n_budgets` budgets a factor `budget_step` apart from `phase_clearance` × the
                 phase (a span of ≥ 8), the held-out budget `heldout_factor` × the largest;
  sizes          per budget `per_budget` consecutive sizes of the model family centred (in log N)
                 on the vertex N*(C) = k·C^a fitted to the pilot's per-budget vertices;
  seeds          enough that the run-to-run σ measured by the pilot, over √seeds, is ≤ SIGMA_OK;
  cost           every run's tokens × the seconds per token measured for its size, plus a fixed
                 cost per run, over the processes' gain, against the minutes given; every run
                 within `max_epochs` of the training split.
A design that cannot hold (too few minutes, too few tokens) is refused with what it would need,
unless forced; a forced design carries the warning into design.json and the report.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from scaling import files
from scaling.errors import UserError

DESIGN_FILE = "design.json"
FORMAT = "scaling-design-v1"
SIGMA_OK = 0.01           # nats: the run-to-run noise of one point the fits can live with
MAX_SEEDS = 3
PHASE_MARGIN = 0.02       # nats below the bigram loss that count as past the change of phase


@dataclasses.dataclass(frozen=True)
class Pilot:
  """What the pilot measured (scaling/design/pilot.py), in the units of the names."""
  bigram_loss: float
  n_train_tokens: int
  lr_scale: float                 # the multiple of Kaplan's LR(N) chosen by the probe, at …
  lr_probe: list                  # [{"N", "multiplier", "loss"}]
  grid: list                      # [{"N", "C", "loss"}]: the pilot's runs and branches
  seconds_per_token: list         # [{"N", "s_per_token"}]
  run_overhead_s: float           # compile, evaluation and checkpoints of one run
  sigma: float | None             # run-to-run σ of one point (two seeds), nats
  lr_ref_n: float = 0.0           # … N = lr_ref_n, times (N/lr_ref_n)^lr_n_exponent elsewhere
  lr_n_exponent: float = 0.0
  cost_factor: float = 1.0        # the pilot grid's measured wall time / the cost model's
  process_gain: float = 1.0       # how much faster the training processes are than one process


@dataclasses.dataclass(frozen=True)
class Member:
  """A model of the family: its shape, N (non-embedding) and FLOPs per token (the convention)."""
  shape: tuple
  n: float
  flop_per_token: float


@dataclasses.dataclass(frozen=True)
class Design:
  format: str
  source: str
  store: str
  minutes: float
  flop_convention: str
  family: list                    # [[n_layer, d_model, n_heads]]
  budgets_flop: list
  sizes: list                     # per budget: indices into family
  heldout_flop: float
  lr_scale: float
  lr_ref_n: float
  lr_n_exponent: float
  warmup_steps: int
  min_steps: int
  max_epochs: float
  seeds: int
  batch_tokens: int
  expected_minutes: float
  forced: bool
  warnings: list
  choices: dict                   # each choice: the measurement and the rule behind it
  pilot: dict
  extra: list = dataclasses.field(default_factory=list)   # [budget index, family index]: sizes
                                  # added after the sweep on a lopsided profile's short side
  config: dict = dataclasses.field(default_factory=dict)  # the run config the design was made
                                  # with (context, vocabulary, batch, overrides), as JSON


# ---------------------------------------------------------------------------------------------
# The plan.


def phase_budget(grid: list, bigram: float) -> tuple[float, bool]:
  """The compute where the pilot's best loss crosses PHASE_MARGIN below the bigram loss,
  interpolated in log C between the pilot budgets around it (those budgets move with the
  measured throughput), and whether it was extrapolated (a line in log C through the three
  largest pilot budgets' best losses) because no pilot budget reached it."""
  best = _best_by_budget(grid)
  target = bigram - PHASE_MARGIN
  cs = sorted(best)
  for i, c in enumerate(cs):
    if best[c] < target:
      if i == 0:
        return c, False
      lo = cs[i - 1]
      t = (best[lo] - target) / (best[lo] - best[c])
      return float(math.exp(math.log(lo) + t * math.log(c / lo))), False
  cs = cs[-3:]
  if len(cs) < 2:
    raise UserError("the pilot has fewer than two budgets; it cannot locate the change of phase")
  slope, icpt = np.polyfit(np.log(cs), [best[c] for c in cs], 1)
  if slope >= 0:
    raise UserError(f"the pilot's best loss does not fall with compute ({', '.join(f'{best[c]:.3f}' for c in cs)} "
                    f"nats at C = {', '.join(f'{c:.3g}' for c in cs)}): check the corpus and the LR")
  return float(math.exp((target - icpt) / slope)), True


def _best_by_budget(grid: list) -> dict:
  best: dict = {}
  for row in grid:
    best[row["C"]] = min(best.get(row["C"], math.inf), row["loss"])
  return best


def vertex(ns, losses) -> float | None:
  """N at the minimum of a parabola in log N through a budget's (N, loss) points nearest its
  best one (three of them); None when they curve the wrong way."""
  order = np.argsort(ns)
  ln, y = np.log(np.asarray(ns, float)[order]), np.asarray(losses, float)[order]
  if ln.size < 3:
    return None
  i = int(np.clip(np.argmin(y), 1, ln.size - 2))
  c2, c1, _ = np.polyfit(ln[i - 1:i + 2], y[i - 1:i + 2], 2)
  if c2 <= 0:
    return None
  return float(math.exp(-c1 / (2 * c2)))


def vertex_law(grid: list, from_c: float) -> tuple[float, float, list]:
  """(a, ln k) of N*(C) = k·C^a fitted to the pilot's vertices at budgets ≥ from_c (all budgets
  when fewer than three are: two vertices √2 apart gave a = 0.28 on the Gutenberg books, whose
  sweep then measured 0.87), and the vertices used. With one vertex, a = 0.5 (Hoffmann 2022)."""
  by_c: dict = {}
  for row in grid:
    by_c.setdefault(row["C"], []).append((row["N"], row["loss"]))
  found = [(c, vertex(*zip(*pts))) for c, pts in sorted(by_c.items())]
  found = [(c, v) for c, v in found if v is not None]
  use = [(c, v) for c, v in found if c >= from_c * (1 - 1e-9)]
  if len(use) < 3:
    use = found
  if not use:
    raise UserError("no pilot budget has a minimum among its sizes; widen the pilot's sizes")
  if len(use) == 1:
    c, v = use[0]
    return 0.5, math.log(v) - 0.5 * math.log(c), use
  a, lnk = np.polyfit(np.log([c for c, _ in use]), np.log([v for _, v in use]), 1)
  return float(a), float(lnk), use


def centred_window(family: list, n_star: float, width: int) -> list[int]:
  """The `width` consecutive family members whose mean log N is nearest log n_star."""
  ln = np.log([m.n for m in family])
  width = min(width, len(family))
  starts = range(len(family) - width + 1)
  best = min(starts, key=lambda s: abs(ln[s:s + width].mean() - math.log(n_star)))
  return list(range(best, best + width))


def best_multiplier(rows: list) -> float:
  """The multiple of Kaplan's LR(N) at the minimum of a parabola in log multiple through one
  size's three probed multiples nearest its best (the best probed one at an edge)."""
  pts = sorted((math.log(r["multiplier"]), r["loss"]) for r in rows)
  i = int(np.argmin([y for _, y in pts]))
  if i in (0, len(pts) - 1):
    return math.exp(pts[i][0])
  x, y = zip(*pts[i - 1:i + 2])
  c2, c1, _ = np.polyfit(x, y, 2)
  return math.exp(min(max(-c1 / (2 * c2), x[0]), x[2])) if c2 > 0 else math.exp(x[1])


def lr_rule(probe: list) -> tuple[float, float, float]:
  """(multiple at the reference N, the reference N, the exponent in N) of the learning rate:
  each probed size's best multiple (best_multiplier), log-linear in log N through them."""
  by_n: dict = {}
  for r in probe:
    by_n.setdefault(r["N"], []).append(r)
  best = sorted((n, best_multiplier(rows)) for n, rows in by_n.items())
  if len(best) == 1:
    return best[0][1], best[0][0], 0.0
  slope, icpt = np.polyfit(np.log([n for n, _ in best]), np.log([m for _, m in best]), 1)
  ref = math.exp(float(np.mean(np.log([n for n, _ in best]))))
  return float(math.exp(icpt + slope * math.log(ref))), ref, float(slope)


def seeds_for(sigma: float | None) -> int:
  """Seeds so that σ/√seeds ≤ SIGMA_OK (at most MAX_SEEDS; one when σ is unknown)."""
  if sigma is None or sigma <= SIGMA_OK:
    return 1
  return int(min(MAX_SEEDS, math.ceil((sigma / SIGMA_OK) ** 2)))


def seconds_per_token(pilot: Pilot, family: list):
  """s/token of any member: log s/token linear in log FLOPs per token through the measured
  sizes (a constant when only one was measured)."""
  f_of = {m.n: m.flop_per_token for m in family}
  pts = sorted((math.log(_flop_of(row["N"], family, f_of)), math.log(row["s_per_token"]))
               for row in pilot.seconds_per_token)
  if len(pts) == 1:
    return lambda m: math.exp(pts[0][1])
  slope, icpt = np.polyfit(*zip(*pts), 1)
  return lambda m: math.exp(icpt + slope * math.log(m.flop_per_token))


def _flop_of(n: float, family: list, f_of: dict) -> float:
  if n in f_of:
    return f_of[n]
  ln = np.log([m.n for m in family])     # a size outside the family: interpolated in log-log
  return float(math.exp(np.interp(math.log(n), ln, np.log([m.flop_per_token for m in family]))))


@dataclasses.dataclass(frozen=True)
class Settings:
  """The design's fixed rules (the quickstart's defaults)."""
  n_budgets: int = 7
  budget_step: float = math.sqrt(2.0)
  per_budget: int = 6
  heldout_factor: float = 3.0
  max_epochs: float = 4.0
  warmup_steps: int = 60
  min_steps: int = 80
  decay_frac: float = 0.2           # WSD: a branch costs its cooldown
  # The first fitted budget this factor past the crossing, where the frontier still steepens
  # (generated corpus: started 1.04x past it, held out off by 2.9 %; 1.23–1.38x, by ≤ 1.6 %).
  phase_clearance: float = 2.0 ** 0.25


def grid_seconds(family: list, runs: list, spt, overhead_s: float, decay_frac: float) -> float:
  """What _cost predicts for a trained WSD grid, from its runs' (N, C)."""
  index = {m.n: j for j, m in enumerate(family)}
  budgets = sorted({c for _, c in runs})
  sizes = [[index[n] for n, c in runs if c == b and n in index] for b in budgets]
  return _cost(family, budgets, sizes, [], spt, overhead_s, decay_frac)[0]


def _cost(family: list, budgets: list, sizes: list, heldout: list, spt, overhead_s: float,
          decay_frac: float) -> tuple[float, int]:
  """(seconds, runs) of one seed of the sweep (WSD: per size its longest run and a cooldown per
  shorter budget) and of the held-out runs."""
  seconds, runs = 0.0, 0
  for j in sorted({j for row in sizes for j in row}):
    m = family[j]
    mine = sorted(c for c, row in zip(budgets, sizes) if j in row)
    tokens = mine[-1] / m.flop_per_token + decay_frac * sum(mine[:-1]) / m.flop_per_token
    seconds += tokens * spt(m) + len(mine) * overhead_s
    runs += len(mine)
  for m, c in heldout:
    seconds += c / m.flop_per_token * spt(m) + overhead_s
    runs += 1
  return seconds, runs


def _nearest(family: list, n: float) -> int:
  return int(np.argmin([abs(math.log(m.n / n)) for m in family]))


def plan(pilot: Pilot, family: list, minutes: float, batch_tokens: int,
         settings: Settings = Settings(), force: bool = False) -> dict:
  """The design's numbers from the pilot's measurements (a dict of Design's planned fields);
  UserError naming what it would need when the minutes or the corpus cannot buy it."""
  s = settings
  c_phase, extrapolated = phase_budget(pilot.grid, pilot.bigram_loss)
  a, lnk, used = vertex_law(pilot.grid, c_phase)
  n_star = lambda c: math.exp(lnk + a * math.log(c))
  budgets = [c_phase * s.phase_clearance * s.budget_step ** k for k in range(s.n_budgets)]
  warnings: list[str] = []
  sizes = []
  for c in budgets:
    window = centred_window(family, n_star(c), s.per_budget)
    keep = [j for j in window if c / family[j].flop_per_token / batch_tokens >= s.min_steps]
    if len(keep) < len(window):
      warnings.append(f"C={c:.3g}: {len(window) - len(keep)} size(s) left out, under "
                      f"{s.min_steps} steps")
    if window[0] == 0 or window[-1] == len(family) - 1:
      warnings.append(f"C={c:.3g}: the predicted vertex N*={n_star(c):.3g} is near the edge of "
                      "the model family")
    sizes.append(keep)
  heldout_c = s.heldout_factor * budgets[-1]
  heldout = [(family[_nearest(family, f * n_star(heldout_c))], heldout_c) for f in (0.5, 1, 2)]
  seeds = seeds_for(pilot.sigma)
  one_seed_s, runs = _cost(family, budgets, sizes, heldout, seconds_per_token(pilot, family),
                           pilot.run_overhead_s, s.decay_frac)
  expected_min = seeds * one_seed_s * pilot.cost_factor / pilot.process_gain / 60
  most_tokens = max([c / family[j].flop_per_token for c, row in zip(budgets, sizes) for j in row]
                    + [c / m.flop_per_token for m, c in heldout])
  problems = []
  if expected_min > minutes:
    problems.append(f"it needs about {expected_min:.0f} minutes here ({runs * seeds} runs from "
                    f"C={budgets[0]:.3g} to the held-out C={heldout_c:.3g}), {minutes:.1f} given")
  if most_tokens > s.max_epochs * pilot.n_train_tokens:
    problems.append(f"its longest run reads {most_tokens:.3g} tokens, {most_tokens / pilot.n_train_tokens:.1f} "
                    f"epochs of the {pilot.n_train_tokens:.3g}-token training split (at most "
                    f"{s.max_epochs:g}): it needs a corpus of ≥ {most_tokens / s.max_epochs:.3g} tokens")
  if problems:
    why = (f"the change of phase (best run below the bigram loss {pilot.bigram_loss:.3f}) comes "
           f"at C ≈ {c_phase:.3g} FLOP{' (extrapolated past the pilot)' if extrapolated else ''}, "
           f"so the fitted budgets start at {budgets[0]:.3g} and span {budgets[-1] / budgets[0]:.1f}x; ")
    if not force:
      raise UserError("this corpus and time cannot buy an isoFLOP design that answers: " + why
                      + "; ".join(problems) + ". Give more --minutes or a larger corpus, or "
                      "--force to train it anyway (the report then carries this warning)")
    warnings.append("forced: " + why + "; ".join(problems))
  choices = {
      "lr_scale": {"value": pilot.lr_scale, "ref_n": pilot.lr_ref_n,
                   "n_exponent": pilot.lr_n_exponent,
                   "rule": "per probed size the multiple of Kaplan's LR(N) at the minimum of a "
                           "parabola in log multiple; log-linear in log N through the sizes; "
                           "the peak of a WSD run whose stable phase falls as √(probe steps/t) "
                           "past the probe's length",
                   "measured": pilot.lr_probe},
      "phase": {"C": c_phase, "extrapolated": extrapolated, "bigram_loss": pilot.bigram_loss,
                "rule": f"where the pilot's best loss crosses {PHASE_MARGIN} nats below the "
                        "bigram loss, interpolated in log C", "measured": pilot.grid},
      "budgets": {"rule": f"{s.n_budgets} budgets x{s.budget_step:.3g} apart from "
                          f"{s.phase_clearance:.3g}x the phase; "
                          f"held out at {s.heldout_factor:g}x the largest"},
      "sizes": {"a": a, "ln_k": lnk, "vertices": [{"C": c, "N": v} for c, v in used],
                "rule": f"{s.per_budget} consecutive family sizes centred in log N on "
                        "N*(C) = k·C^a fitted to the pilot's vertices"},
      "seeds": {"value": seeds, "sigma": pilot.sigma,
                "rule": f"σ/√seeds ≤ {SIGMA_OK} nats, at most {MAX_SEEDS}"},
      "cost": {"seconds_per_token": pilot.seconds_per_token, "run_overhead_s":
               pilot.run_overhead_s, "runs": runs * seeds, "minutes": expected_min,
               "factor": pilot.cost_factor, "process_gain": pilot.process_gain,
               "rule": "per size, its longest run and a cooldown per shorter budget, at the "
                       "pilot's seconds per token, plus a fixed cost per run; times the factor "
                       "by which the same model missed the pilot grid's own wall time; over "
                       "the processes' gain (scaling/experiments/processes.py)"},
  }
  return {"budgets_flop": budgets, "sizes": sizes, "heldout_flop": heldout_c, "seeds": seeds,
          "expected_minutes": expected_min, "warnings": warnings, "choices": choices,
          "lr_scale": pilot.lr_scale, "lr_ref_n": pilot.lr_ref_n,
          "lr_n_exponent": pilot.lr_n_exponent, "warmup_steps": s.warmup_steps,
          "min_steps": s.min_steps,
          "max_epochs": s.max_epochs, "forced": bool(problems)}


def profile_vertex(ns, losses) -> float | None:
  """The vertex of a parabola in log N through every size of one budget (Hoffmann 2022 §3.2);
  None when it opens downward."""
  if len(ns) < 3:
    return None
  c2, c1, _ = np.polyfit(np.log(np.asarray(ns, float)), np.asarray(losses, float), 2)
  return float(math.exp(-c1 / (2 * c2))) if c2 > 0 else None


def short_sides(budgets: list, sizes: list, vertices: dict, family: list) -> list:
  """[budget index, family index] of one more size for each budget whose vertex (vertices: budget
  → N*, a parabola's) lies in the outer quarter of its sizes' log N range or beyond it: the
  family member just past the sizes on the vertex's side (none past the family's ends)."""
  out = []
  for k, (c, row) in enumerate(zip(budgets, sizes)):
    if c not in vertices or vertices[c] is None:
      continue
    ln = [math.log(family[j].n) for j in row]
    x = (math.log(vertices[c]) - min(ln)) / max(max(ln) - min(ln), 1e-12)
    if x < 0.25 and min(row) > 0:
      out.append([k, min(row) - 1])
    elif x > 0.75 and max(row) < len(family) - 1:
      out.append([k, max(row) + 1])
  return out


# ---------------------------------------------------------------------------------------------
# design.json: written whole or not at all, validated when read.


def write(folder: Path, design: Design) -> Path:
  path = Path(folder) / DESIGN_FILE
  files.atomic_write_text(path, json.dumps(dataclasses.asdict(design), indent=1))
  return path


_TYPES = {"format": str, "source": str, "store": str, "minutes": (int, float),
          "flop_convention": str, "family": list, "budgets_flop": list, "sizes": list,
          "heldout_flop": (int, float), "lr_scale": (int, float), "lr_ref_n": (int, float),
          "lr_n_exponent": (int, float), "warmup_steps": int,
          "min_steps": int, "max_epochs": (int, float), "seeds": int, "batch_tokens": int,
          "expected_minutes": (int, float), "forced": bool, "warnings": list, "choices": dict,
          "pilot": dict, "extra": list, "config": dict}


def read(path) -> Design:
  """design.json, checked field by field: a one-line error naming what is wrong."""
  path = Path(path)
  if path.is_dir():
    path = path / DESIGN_FILE
  try:
    doc = json.loads(path.read_text())
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise UserError(f"cannot read the design {path} ({' '.join(str(e).split())}); write it "
                    "again with `scaling design`") from None
  if not isinstance(doc, dict) or doc.get("format") != FORMAT:
    raise UserError(f"{path} is not a design file ({FORMAT}); write one with `scaling design`")
  for key, kind in _TYPES.items():
    if key not in doc:
      raise UserError(f"{path}: the field {key!r} is missing")
    if not isinstance(doc[key], kind) or (kind is int and isinstance(doc[key], bool)):
      raise UserError(f"{path}: the field {key!r} has the wrong type ({type(doc[key]).__name__})")
  _check_values(path, doc)
  return Design(**{k: doc[k] for k in _TYPES})


def with_extra(d: Design, extra: list) -> Design:
  return dataclasses.replace(d, extra=[list(e) for e in extra])


def _check_values(path: Path, doc: dict) -> None:
  n_family = len(doc["family"])
  rules = [
      (all(isinstance(s, list) and len(s) >= 3 and all(isinstance(x, int) and x > 0
                                                       for x in s[:3]) for s in doc["family"]),
       "family must list [n_layer, d_model, n_heads] shapes of positive integers"),
      (all(isinstance(c, (int, float)) and math.isfinite(c) and c > 0
           for c in doc["budgets_flop"]) and doc["budgets_flop"] == sorted(doc["budgets_flop"]),
       "budgets_flop must be positive FLOP counts in increasing order"),
      (len(doc["sizes"]) == len(doc["budgets_flop"]) and all(
          isinstance(row, list) and row and all(isinstance(j, int) and 0 <= j < n_family
                                                for j in row) for row in doc["sizes"]),
       f"sizes must hold, per budget, a non-empty list of family indices (0..{n_family - 1})"),
      (doc["heldout_flop"] > max(doc["budgets_flop"] or [0]),
       "heldout_flop must exceed the largest budget"),
      (doc["lr_scale"] > 0 and doc["max_epochs"] > 0, "lr_scale and max_epochs must be positive"),
      (all(isinstance(e, list) and len(e) == 2 and all(isinstance(x, int) for x in e)
           and 0 <= e[0] < len(doc["budgets_flop"]) and 0 <= e[1] < n_family
           for e in doc["extra"]), "extra must list [budget index, family index] pairs"),
      (1 <= doc["seeds"] <= 16 and doc["warmup_steps"] >= 0 and doc["min_steps"] >= 1
       and doc["batch_tokens"] >= 1, "seeds, warmup_steps, min_steps or batch_tokens out of range"),
  ]
  for ok, what in rules:
    if not ok:
      raise UserError(f"{path}: {what}")

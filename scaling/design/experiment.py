"""`scaling design` and a design's sweep: measure (scaling/design/pilot.py), plan
(scaling/design/planner.py), write design.json; and the isoFLOP sweep config that trains a
design.json."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import ml_collections
import numpy as np

from scaling.config.load import load_config_file, to_json
from scaling.config.spec import validate
from scaling.data import tokenize
from scaling.design import pilot as pilotlib, planner
from scaling.errors import UserError

BASE_CONFIG = "isoflop_cpu"     # context, vocabulary, batch, evaluation of a designed sweep


def base_config(source: str = ""):
  cfg = load_config_file(BASE_CONFIG)
  with cfg.unlocked():
    del cfg["sweep"]
  if source:
    cfg.data.source = source
  return cfg


def make_design(cfg, folder: Path, minutes: float, force: bool = False,
                verbose: bool = True, processes: int = 1) -> planner.Design:
  """Tokenizes cfg's corpus into <folder>/store (reused when there), runs the pilot in
  <folder>/pilot, plans the sweep and the held-out runs into the minutes the pilot left, and
  writes <folder>/design.json; UserError (nothing trained beyond the pilot) when the minutes or
  the corpus cannot buy a design that answers."""
  if not minutes > 0:
    raise UserError(f"--minutes must be a positive number, got {minutes}")
  folder = Path(folder)
  if folder.exists() and not folder.is_dir():
    raise UserError(f"--out {folder} is a file, not a folder; give a new folder or a design's")
  store = tokenize.build_store(validate(cfg).data, out=str(folder / "store"), verbose=verbose)
  cfg.data.store, cfg.run_dir = str(store.folder), str(folder)
  settings = planner.Settings()
  # The rate the probe finds best is the best for its own length; longer runs want a lower one:
  # every designed run's stable phase falls as √(PROBE_STEPS/t) past the probe's length.
  cfg.train.stable_ref_steps = pilotlib.PROBE_STEPS
  t0 = time.time()
  pilot = pilotlib.measure(cfg, store, minutes, settings.warmup_steps, verbose, processes)
  left = minutes - (time.time() - t0) / 60     # the pilot's own minutes are spent

  fam = pilotlib.family(cfg, store.n_vocab)
  batch_tokens = validate(cfg).train.batch_size * cfg.model.n_ctx
  planned = planner.plan(pilot, fam, left, batch_tokens, settings, force)
  made = planner.Design(format=planner.FORMAT, source=cfg.data.source, store=str(store.folder),
                       minutes=float(minutes), flop_convention="palm",
                       family=[list(m.shape) for m in fam], batch_tokens=batch_tokens,
                       pilot=dataclasses.asdict(pilot), config=json.loads(to_json(cfg)),
                       **planned)
  path = planner.write(folder, made)
  if verbose:
    for line in summary_lines(made):
      print(line, flush=True)
    print(f"wrote {path}", flush=True)
  return made


def summary_lines(d: planner.Design) -> list[str]:
  ch = d.choices
  lines = [f"design: {len(d.budgets_flop)} budgets {d.budgets_flop[0]:.3g} … "
           f"{d.budgets_flop[-1]:.3g} FLOP, held out at {d.heldout_flop:.3g}; "
           f"{d.seeds} seed(s); {d.lr_scale:.3g} x Kaplan's LR(N) at N = {d.lr_ref_n:.3g}, "
           f"x (N/{d.lr_ref_n:.3g})^{d.lr_n_exponent:.3f} elsewhere; about "
           f"{d.expected_minutes:.1f} minutes"
           + (f" (its processes {ch['cost']['process_gain']:.2f}x as fast as one)"
              if ch["cost"].get("process_gain", 1.0) > 1 else ""),
           f"  change of phase: C ≈ {ch['phase']['C']:.3g} (bigram loss "
           f"{ch['phase']['bigram_loss']:.3f}{', extrapolated' if ch['phase']['extrapolated'] else ''})",
           f"  vertex law from the pilot: N* ∝ C^{ch['sizes']['a']:.3f}"]
  for c, row in zip(d.budgets_flop, d.sizes):
    widths = ", ".join(str(d.family[j][1]) for j in row)
    lines.append(f"  C = {c:.3g}: widths {widths}")
  lines += [f"  warning: {w}" for w in d.warnings]
  return lines


def sweep_config(path):
  """The isoFLOP sweep config of a design.json (its folder, store, budgets, sizes, LR, seeds)."""
  d = planner.read(path)
  folder = Path(path).parent if Path(path).suffix == ".json" else Path(path)
  if not Path(d.store).is_dir():
    raise UserError(f"the design's token store {d.store} is missing; run `scaling design` again")
  cfg = ml_collections.ConfigDict(d.config) if d.config else base_config(d.source)
  cfg.data.store, cfg.run_dir = d.store, str(folder)
  used = sorted({j for row in d.sizes for j in row})
  pc = pilotlib.isoflop_cfg(cfg, [d.family[j] for j in used], d.budgets_flop, _lr(d),
                                d.warmup_steps,
                                [[used.index(j) for j in row] for row in d.sizes])
  pc.run_dir = str(folder)
  pc.sweep.seeds, pc.sweep.min_steps, pc.sweep.max_epochs = d.seeds, d.min_steps, d.max_epochs
  pc.sweep.flop_convention = d.flop_convention
  return pc, d


def extra_config(path):
  """The isoFLOP sweep of the sizes added on lopsided profiles' short sides (<folder>/extra/):
  their own WSD families, so the main sweep's runs stay as they were."""
  cfg, d = sweep_config(path)
  budgets = sorted({e[0] for e in d.extra})
  shapes = sorted({e[1] for e in d.extra})
  pc = pilotlib.isoflop_cfg(cfg, [d.family[j] for j in shapes],
                                [d.budgets_flop[k] for k in budgets], _lr(d), d.warmup_steps,
                                [[shapes.index(j) for kk, j in d.extra if kk == k]
                                 for k in budgets])
  pc.run_dir = str(Path(cfg.run_dir) / "extra")
  pc.sweep.seeds, pc.sweep.min_steps, pc.sweep.max_epochs = d.seeds, d.min_steps, d.max_epochs
  pc.sweep.flop_convention = d.flop_convention
  return pc


def widen_lopsided(folder, overwrite: bool = False, verbose: bool = True,
                   processes: int = 1) -> int:
  """After the sweep: one more size on the short side of every lopsided profile (its vertex in
  the outer quarter of its sizes or beyond), recorded in design.json and trained in
  <folder>/extra/; returns how many were added."""
  from scaling.experiments.expand import expand
  from scaling.experiments.sweep import run_points
  from scaling.laws import allocate, howbig
  folder = Path(folder)
  d = planner.read(folder)
  runs, _ = howbig.sweep_runs(folder)
  pts = allocate.read_points(runs, d.flop_convention)
  vertices = {}
  for c in d.budgets_flop:
    at = np.isclose(pts["budget"], c, rtol=1e-9)
    vertices[c] = planner.profile_vertex(pts["N"][at], pts["loss"][at]) if at.any() else None
  fam = [planner.Member(tuple(s), n, 0.0) for s, n in zip(d.family, _family_n(d))]
  new = [e for e in planner.short_sides(d.budgets_flop, _sizes_with_extra(d), vertices, fam)
         if e not in d.extra]
  if not new:
    return 0
  planner.write(folder, planner.with_extra(d, d.extra + new))
  if verbose:
    print("[design] lopsided profiles: one more size at " + ", ".join(
        f"C={d.budgets_flop[k]:.3g} (width {d.family[j][1]})" for k, j in new), flush=True)
  run_points(expand(extra_config(folder)), overwrite, verbose, processes=processes)
  return len(new)


def _sizes_with_extra(d: planner.Design) -> list:
  rows = [list(r) for r in d.sizes]
  for k, j in d.extra:
    rows[k].append(j)
  return [sorted(r) for r in rows]


def _family_n(d: planner.Design) -> list:
  """N (non-embedding, Kaplan's count) of each family shape: 12·n_layer·d_model²."""
  return [12.0 * s[0] * s[1] ** 2 for s in d.family]


def _lr(d: planner.Design) -> tuple:
  return d.lr_scale, d.lr_ref_n, d.lr_n_exponent


def heldout_factor(d: planner.Design) -> float:
  return d.heldout_flop / max(d.budgets_flop)

"""Controlled experiment: does the online noise scale depend on the learning rate at a fixed point?

The batch sweep's B_crit at L = 4.0 is 2× the online windowed B_simple measured in its
constant-LR runs, while at higher losses the two agree. Hypothesis: at a constant LR the iterate
rattles across the valley; that keeps the measured |G|² above the gradient of the point the loss
describes, so B_simple = tr(Σ)/|G|² (McCandlish et al. 2018, arXiv 1812.06162, eq. 2.8) reads low,
and more so the larger LR/B (a noise floor of |G|² ∝ LR/B for SGD near a minimum).

The experiment holds the point fixed and moves only the LR: one constant-LR source run to
--point steps (loss ≈ 4.1 with the defaults, the sweep's last target), then forks from its exact
state (train.init_mode = fork) at LR × 1, ¼, 1/16 and at two batch sizes, each --steps steps with
no warm-up. Each fork reports the ratio of sums Σ tr(Σ) / Σ |G|² over its steps after the first
--skip (the same estimator as the sweep's window), the mean |G|² and tr(Σ), and its final held-out
loss. If the hypothesis holds, |G|² falls and B_simple rises as the LR falls, with tr(Σ) and the
loss nearly unchanged; if B_simple does not move, the gap lies on the sweep's side.

  python benchmarks/gns_lr_floor.py --out /tmp/gns_lr_floor

Measured (2×64 model, context 64, vocabulary 2048, the TinyStories sample; source at step 200, held-out
loss 4.13; 120-step forks, 2 seeds, 6 min on 2 cores):

  batch  LR×     B_simple  B_P      mean|G|²  mean tr(Σ)  final loss
     16  1           2256     5316    0.2182       490.9  3.8946
     16  0.25        6138    10477    0.0802       490.2  3.9668
     16  0.0625     15479    21405    0.0296       452.2  4.0380
     64  1           2058     4980    0.3229       664.6  3.6411
     64  0.25        6282    15551    0.0911       550.9  3.8645
     64  0.0625     29886    46477    0.0156       460.1  4.0022

At one point of the landscape B_simple moves 7–15× with the LR alone: tr(Σ) stays within 8 %,
|G|² falls 7–20×. The online estimate at a constant LR measures the LR's noise floor of |G|², not
the point; the batch sweep's B_crit at L = 4.0 (4,615 tokens) lies between the ×1 and ×¼ values.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from scaling import files
from scaling.config.load import apply_overrides, load_config_file, to_json
from scaling.train import loop as trainlib
from scaling.train import rundir
from scaling.train import summary as summarylib
from scaling.config.spec import validate


def _cfg(out: Path, name: str, args, fields: dict):
  cfg = load_config_file("cbs_branch")
  del cfg["sweep"]
  cfg.name, cfg.run_dir = name, str(out / name)
  apply_overrides(cfg, ["model.n_layer=2", "model.d_model=64", "model.n_heads=1",
                        "train.tokens=0", "train.min_lr_ratio=1.0", "checkpoint.every=100000",
                        "gns.preconditioned=True"]
                  + [f"{k}={v}" for k, v in fields.items()])
  return cfg


def _run(cfg) -> Path:
  if not rundir.is_finished(Path(cfg.run_dir), to_json(cfg)):
    trainlib.train(validate(cfg), verbose=False)
  return Path(cfg.run_dir)


def _window(run: Path, skip: int) -> dict:
  rows = [r for r in rundir.read_metrics(run) if r.get("step", 0) > skip]
  def col(key):
    return np.array([r[key] if r.get(key) is not None else np.nan for r in rows], float)
  g2, tr = col("gns_g2"), col("gns_trace")
  g2p, trp = col("gns_g2_p"), col("gns_trace_p")
  ok, okp = np.isfinite(g2) & np.isfinite(tr), np.isfinite(g2p) & np.isfinite(trp)
  summary = summarylib.read(run)
  return {"b_simple_tokens": float(tr[ok].sum() / g2[ok].sum()),
          "b_precond_tokens": float(trp[okp].sum() / g2p[okp].sum()) if okp.any() else None,
          "mean_g2": float(g2[ok].mean()), "mean_trace": float(tr[ok].mean()),
          "final_eval_loss": summary.final_eval_loss, "batch_tokens": summary.batch_tokens}


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--out", default="runs/gns_lr_floor")
  ap.add_argument("--point", type=int, default=200, help="source steps before the forks")
  ap.add_argument("--steps", type=int, default=120, help="steps per fork")
  ap.add_argument("--skip", type=int, default=20, help="fork steps left out of the window")
  ap.add_argument("--lr", type=float, default=3e-3, help="the source's constant LR")
  ap.add_argument("--lr-mults", default="1,0.25,0.0625")
  ap.add_argument("--batches", default="16,64", help="fork batch sizes (sequences)")
  ap.add_argument("--seeds", default="1,2")
  args = ap.parse_args()
  out = Path(args.out)
  t0 = time.time()
  source = _cfg(out, "source", args, {"train.batch_size": 16, "train.peak_lr": args.lr,
                                      "train.steps": args.point, "train.warmup_steps": 20,
                                      "checkpoint.keep_steps": str(args.point)})
  src = _run(source)
  print(f"source: {args.point} steps, held-out loss "
        f"{summarylib.read(src).final_eval_loss:.4f}", flush=True)
  rows = []
  for b in (int(x) for x in args.batches.split(",")):
    for mult in (float(x) for x in args.lr_mults.split(",")):
      for seed in (int(x) for x in args.seeds.split(",")):
        fork = _cfg(out, f"b{b}-lr{mult:g}-s{seed}", args, {
            "seed": seed, "train.batch_size": b, "train.peak_lr": args.lr * mult,
            "train.steps": args.steps, "train.warmup_steps": 0, "eval.every": args.steps,
            "train.init_from": f"{src}@{args.point}", "train.init_mode": "fork"})
        rows.append({"batch_seqs": b, "lr_mult": mult, "seed": seed,
                     **_window(_run(fork), args.skip)})
        print(json.dumps(rows[-1]), flush=True)
  summary = []
  for b in sorted({r["batch_seqs"] for r in rows}):
    for mult in sorted({r["lr_mult"] for r in rows}, reverse=True):
      sel = [r for r in rows if r["batch_seqs"] == b and r["lr_mult"] == mult]
      summary.append({"batch_seqs": b, "lr_mult": mult,
                      **{k: float(np.mean([r[k] for r in sel if r[k] is not None]))
                         for k in ("b_simple_tokens", "b_precond_tokens", "mean_g2",
                                   "mean_trace", "final_eval_loss")}})
  result = {"args": vars(args), "rows": rows, "summary": summary, "wall_s": time.time() - t0}
  files.atomic_write_text(out / "gns_lr_floor.json", json.dumps(result, indent=1))
  print("\nbatch  LR×     B_simple  B_P      mean|G|²  mean tr(Σ)  final loss")
  for s in summary:
    print(f"{s['batch_seqs']:5d}  {s['lr_mult']:<6g}  {s['b_simple_tokens']:8.0f}  "
          f"{s['b_precond_tokens']:7.0f}  {s['mean_g2']:8.4f}  {s['mean_trace']:10.1f}  "
          f"{s['final_eval_loss']:.4f}")
  print(f"wall {result['wall_s']:.0f} s")


if __name__ == "__main__":
  main()

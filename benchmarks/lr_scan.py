"""The learning rate of the CPU isoFLOP sweep: held-out loss of short WSD runs at multiples of
Kaplan's LR(N) (Kaplan 2020, arXiv 2001.08361, eq. D.1), for a few of its sizes.

  python benchmarks/lr_scan.py --out /tmp/lrscan --shapes "1,16,1 2,48,1" --mults "1 2 4 8 16 32"

Kaplan's rule was fitted on models of 1e6+ parameters at batches of ~5e5 tokens; the models of a
2-core sweep (1e3–1e5 parameters, 2048-token batches) train best well above it. configs/
isoflop_cpu.py sets sweep.lr_scale from this scan.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scaling import files
from scaling.config.load import apply_overrides, load_config_file, to_json
from scaling.model.transformer import kaplan_learning_rate
from scaling.train import loop as trainlib
from scaling.train import rundir
from scaling.train import summary as summarylib
from scaling.config.spec import validate


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--out", default="runs/lr_scan")
  ap.add_argument("--shapes", default="1,16,1 2,48,1")
  ap.add_argument("--mults", default="1 2 4 8 16 32")
  ap.add_argument("--steps", type=int, default=600)
  ap.add_argument("--store", default="", help="a token store (default: built from the config)")
  args = ap.parse_args()
  out, rows = Path(args.out), []
  for shape in args.shapes.split():
    n_layer, d_model, n_heads = (int(x) for x in shape.split(","))
    n = 12 * n_layer * d_model ** 2                      # Kaplan's N for d_ff = 4·d_model
    for mult in (float(m) for m in args.mults.split()):
      cfg = load_config_file("isoflop_cpu")
      del cfg["sweep"]
      name = f"L{n_layer}-D{d_model}-m{mult:g}"
      apply_overrides(cfg, [f"name={name}", f"run_dir={out / name}", f"model.n_layer={n_layer}",
                            f"model.d_model={d_model}", f"model.n_heads={n_heads}",
                            f"train.steps={args.steps}", "train.tokens=0", "train.schedule=wsd",
                            "train.warmup_steps=20", f"train.peak_lr={mult * kaplan_learning_rate(n)}",
                            "eval.every=100000"] + ([f"data.store={args.store}"] if args.store else []))
      if not rundir.is_finished(Path(cfg.run_dir), to_json(cfg)):
        trainlib.train(validate(cfg), verbose=False)
      loss = summarylib.read(Path(cfg.run_dir)).final_eval_loss
      rows.append({"shape": shape, "mult": mult, "peak_lr": cfg.train.peak_lr, "loss": loss})
      print(f"{shape}: {mult:g}× Kaplan's LR(N) = {cfg.train.peak_lr:.4g} → held-out loss "
            f"{loss:.4f}", flush=True)
  files.atomic_write_text(out / "lr_scan.json", json.dumps(rows, indent=1))


if __name__ == "__main__":
  main()

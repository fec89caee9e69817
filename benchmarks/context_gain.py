"""How much of a trained model's loss comes from context beyond the previous token?

Scores each run's early-stopping parameters on held-out windows of its own store and splits the
loss by how many tokens the prediction could see (position 1 sees one token: the bigram
situation). A model that has learned mostly adjacent-token statistics gains little from the later
positions; one that uses longer context gains much. Printed beside the store's bigram reference
loss (scaling/data/ngram.py). Used to explain why an isoFLOP law fitted on runs above the bigram loss
under-predicts the loss of a larger budget (docs/results/2026-12-06-isoflop-allocation.md).

  python benchmarks/context_gain.py RUN_DIR [RUN_DIR ...] [--windows 1024]

Measured on the quickstart's sweep (the TinyStories sample, bigram loss 3.279):

  run                  loss at 1   2     3-4   5-16  17-128  gain
  C1.00e11-L2-D24-H1   3.721  3.638  3.645  3.612  3.633  0.09
  C2.00e11-L2-D32-H1   3.616  3.581  3.537  3.467  3.488  0.13
  C4.00e11-L2-D32-H1   3.623  3.481  3.410  3.343  3.338  0.29
  C1.20e12-L2-D32-H1   3.805  3.221  3.064  2.910  2.867  0.94   (held-out budget)
  C1.20e12-L2-D48-H1   3.663  3.117  3.013  2.903  2.866  0.80   (held-out budget)

Legend: B window, L position, V vocabulary.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scaling.data import store as storelib
from scaling.model import transformer as modellib
from scaling.train import checkpoint, rundir
from scaling.train import summary as summarylib


def load_model(run: Path) -> tuple[nnx.Module, dict, int]:
  """The run's model with its early-stopping parameters, its config, and their step."""
  cfg = json.loads((run / rundir.CONFIG).read_text())
  fields = modellib.ModelConfig.__dataclass_fields__
  mcfg = modellib.ModelConfig(**{k: v for k, v in cfg["model"].items()
                                 if k in fields and k != "compute_dtype"},
                              n_vocab=cfg["data"]["vocab_size"])
  model = modellib.Transformer(mcfg, rngs=nnx.Rngs(0))
  _, params, _ = nnx.split(model, nnx.Param, ...)
  step, restored = checkpoint.restore_best_params(run, params)
  nnx.update(model, restored)
  return model, cfg, step


def loss_by_position(model, tokens_BL: np.ndarray) -> np.ndarray:
  """Per-position cross-entropy (nats) of next-token prediction, averaged over windows."""
  logits_BLV = model(jnp.asarray(tokens_BL[:, :-1]))
  logp_BLV = jax.nn.log_softmax(logits_BLV, -1)
  nll_BL = -jnp.take_along_axis(logp_BLV, jnp.asarray(tokens_BL[:, 1:])[..., None], -1)[..., 0]
  return np.asarray(nll_BL.mean(0))


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("runs", nargs="+", type=Path)
  ap.add_argument("--windows", type=int, default=1024)
  args = ap.parse_args()
  print(f"{'run':24s} {'step':>5s}  loss at 1   2     3-4   5-16  17+   gain  (bigram)")
  for run in args.runs:
    model, cfg, step = load_model(run)
    store = storelib.open_store(summarylib.read(run).store)
    n_ctx = cfg["model"]["n_ctx"]
    held_T = np.asarray(store.eval_T[: min(store.eval_T.size, 1 << 22)])
    starts = np.random.default_rng(0).integers(0, held_T.size - n_ctx - 1, args.windows)
    tokens_BL = np.stack([held_T[s:s + n_ctx + 1] for s in starts]).astype(np.int32)
    loss_L = np.concatenate([loss_by_position(model, tokens_BL[i:i + 128])[None]
                             for i in range(0, len(tokens_BL), 128)]).mean(0)
    spans = [(0, 1), (1, 2), (2, 4), (4, 16), (16, n_ctx)]
    cells = [loss_L[lo:hi].mean() for lo, hi in spans]
    print(f"{run.name:24s} {step:5d}  " + "  ".join(f"{c:.3f}" for c in cells)
          + f"  {cells[0] - cells[-1]:.2f}  ({store.bigram_loss():.3f})")


if __name__ == "__main__":
  main()

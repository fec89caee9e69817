"""Early stopping: a model large for a small data subset overfits; the best checkpoint is kept."""


import numpy as np
import pytest
from flax import nnx

from conftest import read_metrics
from scaling.config.spec import validate
from scaling.data import loader as datalib
from scaling.data.tokenize import build_store
from scaling.model.transformer import ModelConfig, Transformer, cross_entropy
from scaling.train import loop as trainlib
from scaling.train.checkpoint import restore_best_params


@pytest.mark.slow   # 17 s; the patience test below keeps early stopping in the default suite
def test_overfitting_run_keeps_its_minimum(small_cfg):
  cfg = small_cfg(**{"model.d_model": 64, "model.n_heads": 2, "data.max_train_tokens": 800,
                     "train.steps": 400, "train.peak_lr": 1e-2, "train.min_lr_ratio": 1.0,
                     "eval.every": 20, "mesh.num_devices": 1, "checkpoint.every": 100})
  summary = trainlib.train(validate(cfg), verbose=False)
  evals = [(m["step"], m["eval_loss"]) for m in read_metrics(cfg.run_dir) if m["eval_loss"]]
  steps, losses = zip(*evals)
  i_min = int(np.argmin(losses))
  # Held-out loss rises after its minimum (the model memorizes 800 tokens, ≈ 64 epochs).
  assert 0 < i_min < len(losses) - 1 and losses[-1] > losses[i_min] + 0.2
  assert summary.best_eval_step == steps[i_min]
  assert summary.epochs > 20
  # The early-stopped checkpoint restores to that loss on the same fixed held-out batches.
  store = build_store(validate(cfg).data, verbose=False)
  mcfg = ModelConfig(n_layer=1, d_model=64, n_heads=2, n_ctx=16, n_vocab=store.n_vocab)
  graphdef, like = nnx.split(Transformer(mcfg, rngs=nnx.Rngs(0)), nnx.Param)
  step, params = restore_best_params(cfg.run_dir, like)
  assert step == steps[i_min]
  batches = datalib.eval_batches(store.eval_T, 16, cfg.eval.batch_size, cfg.eval.batches)
  model = nnx.merge(graphdef, params)
  loss = np.mean([float(cross_entropy(model(b[:, :-1]), b[:, 1:])) for b in batches])
  assert loss == pytest.approx(summary.best_eval_loss, rel=1e-5)


def test_patience_stops_the_run(small_cfg):
  cfg = small_cfg(**{"model.d_model": 64, "model.n_heads": 2, "data.max_train_tokens": 1500,
                     "train.steps": 400, "train.peak_lr": 1e-2, "eval.every": 20,
                     "train.patience": 3, "mesh.num_devices": 1})
  summary = trainlib.train(validate(cfg), verbose=False)
  assert summary.stopped_early and "patience" in summary.stop_reason
  assert summary.steps == summary.best_eval_step + 3 * 20

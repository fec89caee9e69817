"""Sharded parameters (mesh.fsdp): the same run as pure data parallelism, with each device holding
1/fsdp of the parameters and of AdamW's moments."""

import jax
import numpy as np
import pytest

from scaling.config.spec import validate
from scaling.train import loop as trainlib
from scaling.train import step as steplib
from conftest import read_metrics

MESHES = [(8, 1), (2, 4), (1, 8)]   # (data, fsdp) on the 8 forced CPU devices


def _bytes_per_device(tree) -> dict:
  out = {}
  for leaf in jax.tree.leaves(tree):
    for shard in leaf.addressable_shards:
      out[shard.device] = out.get(shard.device, 0) + shard.data.nbytes
  return out


@pytest.mark.parametrize("fsdp", [4, 8])
def test_each_device_holds_one_fsdp_th_of_the_parameters_and_moments(small_cfg, fsdp):
  cfg = small_cfg(**{"mesh.fsdp": fsdp, "model.d_model": 64, "model.n_heads": 4})
  setup = trainlib.prepare(validate(cfg), verbose=False)
  trainer = steplib.build(setup.mcfg, setup.spec.train, setup.spec.gns, setup.mesh,
                          setup.peak_lr, setup.total_steps)
  params, opt = trainer.state.params, trainer.state.opt_state
  total = sum(x.nbytes for x in jax.tree.leaves(params))
  held = _bytes_per_device(params)
  assert len(held) == 8 and set(held.values()) == {total // fsdp}   # every leaf divides here
  for leaf in jax.tree.leaves(params):
    spec = leaf.sharding.spec
    assert "fsdp" in spec, (leaf.shape, spec)
    axis = list(spec).index("fsdp")
    assert leaf.addressable_shards[0].data.shape[axis] == leaf.shape[axis] // fsdp
  moments = _bytes_per_device([opt[0].mu, opt[0].nu] if hasattr(opt[0], "mu") else opt)
  assert max(moments.values()) <= 2 * total // fsdp + 64          # μ and ν, plus scalar counts


def _step_curves(setup, fsdp: int, steps: int) -> dict:
  """The metrics of `steps` steps of the trainer's own step on a (8/fsdp, fsdp) mesh."""
  trainer = steplib.build(setup.mcfg, setup.spec.train, setup.spec.gns,
                          steplib.make_mesh(0, fsdp), setup.peak_lr, setup.total_steps)
  state, out = trainer.state, []
  for s in range(steps):
    state, metrics = trainer.step_for(s)(state, steplib.global_batch(
        trainer.mesh, setup.train_source[s]), trainer.lr(s))
    out.append({k: float(v) for k, v in jax.device_get(metrics).items()})
  return {k: np.array([r[k] for r in out]) for k in KEYS}


KEYS = ("loss", "grad_norm", "gns_g2", "gns_trace", "b_simple_tokens")


def test_fsdp_gives_the_losses_and_noise_scale_of_data_parallelism(small_cfg):
  """Over 20 steps: data=2, fsdp=4 and data=1, fsdp=8 against data=8 (pure data parallelism),
  the last one through the whole trainer (sharded checkpoints and evaluation included)."""
  cfg = small_cfg(**{"train.steps": 20, "eval.every": 0, "checkpoint.every": 10})
  setup = trainlib.prepare(validate(cfg), verbose=False)
  ref = _step_curves(setup, 1, 20)
  curves = {(2, 4): _step_curves(setup, 4, 20)}
  cfg.mesh.fsdp = 8
  trainlib.train(validate(cfg), verbose=False)
  rec = read_metrics(cfg.run_dir)
  curves[(1, 8)] = {k: np.array([r[k] for r in rec], float) for k in KEYS}
  for mesh, curve in curves.items():
    for key in KEYS:
      np.testing.assert_allclose(curve[key], ref[key], rtol=1e-5, err_msg=f"{mesh} {key}")

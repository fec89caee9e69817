"""`scaling compile`: the real train step compiled for a TPU topology on this machine (libtpu, the
tpu-aot extra; skipped without it), checked against our own counts."""

import importlib.util

import pytest

from scaling.config.load import apply_overrides, load_config_file
from scaling.config.spec import validate
from scaling.train import aot
from conftest import REPO

needs_libtpu = pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                                  reason="libtpu is not installed (pip install -e '.[tpu-aot]')")


def _small(*overrides):
  """A 1.9e6-parameter model (2 layers, d_model 256, context 64), batch 16 × 64, bfloat16."""
  return apply_overrides(load_config_file(str(REPO / "configs/test_small.py")),
                         ["data.vocab_size=1024", "model.compute_dtype=bfloat16",
                          "train.batch_size=16", "model.d_model=256", "model.n_heads=4",
                          "model.n_layer=2", "model.n_ctx=64", *overrides])


def test_a_bad_topology_is_one_line_with_or_without_libtpu(capsys):
  from scaling.cli import main as cli_main
  for topology, expect in (("v5e", "must be CHIP:SHAPE"), ("v9z:1x1", "cannot describe TPU")):
    capsys.readouterr()
    assert cli_main(["compile", "--config", str(REPO / "configs/test_small.py"),
                     "--topology", topology]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and expect in err[-1] and "Traceback" not in "".join(err), err


@needs_libtpu
def test_small_model_compiles_for_v5e_2x2_and_fsdp_divides_the_state():
  dp = aot.compile_step(validate(_small()), "v5e:2x2")
  fsdp = aot.compile_step(validate(_small("mesh.fsdp=4")), "v5e:2x2")
  assert dp.n_chips == 4 and dp.mesh == (4, 1) and fsdp.mesh == (1, 4) and dp.fits
  # Arguments are the train state (params + μ + ν in float32, 12 bytes a parameter, a hand
  # count) and 4 windows per chip: FSDP holds a quarter of the state per chip.
  state = 12 * dp.n_total
  assert dp.bytes_per_device["argument"] == pytest.approx(state, rel=0.01)
  assert fsdp.bytes_per_device["argument"] == pytest.approx(state / 4, rel=0.02)
  assert fsdp.bytes_per_device["total"] < dp.bytes_per_device["total"] / 2
  # XLA's FLOPs of the whole step against the PaLM count (6N + attention + logits per token):
  # a few % above it, for the elementwise work the count leaves out (norms, softmax, GELU, AdamW).
  assert 1.0 < dp.xla_flop_per_step / dp.our_flop_per_step < 1.1

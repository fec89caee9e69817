"""The weight gradient's copied-transpose form (scaling/model/kernels.py) against JAX's own
differentiation of x·w + b; a model through it against the plain model; the trainer's choice of
layers (scaling/train/matmul_forms.py), made before tracing and kept per machine."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scaling.errors import UserError
from scaling.model import kernels
from scaling.model.transformer import ModelConfig, Transformer
from scaling.train import matmul_forms


def test_copied_form_gradients_equal_autodiff():
  rng = np.random.default_rng(0)
  x_TI, w_IO, b_O, r_TO = (jnp.asarray(rng.standard_normal(s), jnp.float32)
                           for s in ((48, 24), (24, 8), (8,), (48, 8)))
  # A scalar that weights every output differently, so each gradient entry is checked.
  loss = lambda f: lambda x, w, b: jnp.sum(jnp.tanh(f(x, w, b)) * r_TO)
  got = jax.grad(loss(kernels.dense_copied_xt), argnums=(0, 1, 2))(x_TI, w_IO, b_O)
  want = jax.grad(loss(lambda x, w, b: x @ w + b), argnums=(0, 1, 2))(x_TI, w_IO, b_O)
  for g, e in zip(got, want):
    np.testing.assert_allclose(np.asarray(g), np.asarray(e), rtol=1e-5, atol=1e-5)
  # The weight gradient by hand: Σ_t x_ti · dy_to.
  dy_TO = (1 - jnp.tanh(x_TI @ w_IO + b_O) ** 2) * r_TO
  np.testing.assert_allclose(np.asarray(got[1]), np.einsum("ti,to->io", x_TI, dy_TO), rtol=1e-5,
                             atol=1e-5)


def _loss_and_grads(copy_xt: tuple):
  cfg = ModelConfig(n_layer=2, d_model=32, n_heads=2, n_ctx=16, n_vocab=64, copy_xt=copy_xt)
  graphdef, params = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)), nnx.Param)
  tokens = jnp.asarray(np.random.default_rng(1).integers(0, 64, (4, 17)), jnp.int32)

  @jax.jit
  def f(p):
    return jax.value_and_grad(lambda p: nnx.merge(graphdef, p).loss(tokens[:, :-1],
                                                                    tokens[:, 1:]))(p)
  return f(params)


def test_model_through_copied_form_matches_plain():
  loss_p, grads_p = _loss_and_grads(())
  every = ModelConfig(n_layer=2, d_model=32, n_heads=2, n_ctx=16, n_vocab=64).biased_linears()
  assert every == ((32, 96), (32, 32), (32, 128), (128, 32))         # by hand: d, 3d, 4d
  for copy_xt in (every, every[2:]):
    loss, grads = _loss_and_grads(copy_xt)
    assert abs(float(loss) - float(loss_p)) < 1e-6
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_p)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_model_is_pure_nothing_measured_while_traced(monkeypatch):
  """Tracing the model never times a matmul: copy_xt is read, not decided."""
  monkeypatch.setattr(matmul_forms, "_measure", lambda *a: pytest.fail("measured while traced"))
  matmul_forms.copy_is_faster.cache_clear()
  _loss_and_grads(((32, 128),))


def test_resolve_names_the_layers_before_tracing(monkeypatch):
  cfg = ModelConfig(n_layer=1, d_model=256, n_heads=4, n_ctx=16, n_vocab=64)
  monkeypatch.setattr(matmul_forms, "copy_is_faster", lambda t, i, o, d: i > o)   # wide in, narrow out
  got = matmul_forms.resolve(cfg, "auto", 1024, "cpu").copy_xt
  assert got == ((1024, 256),)                 # only the MLP's output qualifies (d_ff = 4·256)
  assert matmul_forms.resolve(cfg, "auto", 1024, "gpu").copy_xt == ()
  assert matmul_forms.resolve(cfg, "transposed", 8, "gpu").copy_xt == cfg.biased_linears()
  assert matmul_forms.resolve(cfg, "plain", 1024, "cpu").copy_xt == ()
  with pytest.raises(UserError, match="weight_grad"):
    matmul_forms.resolve(cfg, "fast", 1024, "cpu")


def test_auto_skips_small_layers_and_other_backends(monkeypatch):
  calls = []
  monkeypatch.setattr(matmul_forms, "copy_is_faster", lambda *a: calls.append(a) or True)
  assert not matmul_forms.use_copy("auto", 64, 32, 32, jnp.float32)          # under MIN_MACS
  assert matmul_forms.use_copy("auto", 1024, 1024, 256, jnp.float32)
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert not matmul_forms.use_copy("auto", 1024, 1024, 256, jnp.float32)
  assert calls == [(1024, 1024, 256, "float32")]
  assert matmul_forms.use_copy("transposed", 8, 8, 8, jnp.float32)
  assert not matmul_forms.use_copy("plain", 1024, 1024, 256, jnp.float32)


def test_choice_is_measured_once_per_machine_and_kept(tmp_path, monkeypatch):
  monkeypatch.setenv("SCALING_CACHE", str(tmp_path))
  measured = []
  monkeypatch.setattr(matmul_forms, "_measure", lambda *a: measured.append(a[:3]) or True)
  matmul_forms.copy_is_faster.cache_clear()
  assert matmul_forms.copy_is_faster(512, 64, 32, "float32")
  matmul_forms.copy_is_faster.cache_clear()                 # a new process: read back, not measured
  monkeypatch.setattr(matmul_forms, "_measure", lambda *a: measured.append(a[:3]) or False)
  assert matmul_forms.copy_is_faster(512, 64, 32, "float32")
  assert measured == [(512, 64, 32)]
  assert not matmul_forms.copy_is_faster(512, 32, 64, "float32")          # another shape is measured
  monkeypatch.setattr(matmul_forms, "_machine", lambda: "another-processor")
  matmul_forms.copy_is_faster.cache_clear()
  assert not matmul_forms.copy_is_faster(512, 64, 32, "float32")          # so is another processor
  assert len(measured) == 3
  assert len(json.loads((tmp_path / "weight-grad-forms.json").read_text())) == 3
  matmul_forms.copy_is_faster.cache_clear()


def test_copy_of_a_layer_the_model_lacks_is_a_clear_error():
  with pytest.raises(UserError, match="copy_xt"):
    ModelConfig(n_layer=1, d_model=8, n_heads=1, n_ctx=4, n_vocab=16, copy_xt=((8, 9),)).validate()

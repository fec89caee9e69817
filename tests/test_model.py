"""Parameter and FLOP counts against the real parameter tree and hand counts; model behaviour."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scaling.errors import UserError
from scaling.model import (ModelConfig, Transformer, cross_entropy, flops_per_token,
                           is_embedding_path, kaplan_learning_rate, param_count)

SHAPES = [
    dict(n_layer=1, d_model=32, n_heads=2, n_ctx=16, n_vocab=300),
    dict(n_layer=3, d_model=48, n_heads=3, n_ctx=24, n_vocab=500, tie_embeddings=False),
    dict(n_layer=2, d_model=64, n_heads=8, n_ctx=32, n_vocab=260, d_ff=64),          # ratio 1
    dict(n_layer=2, d_model=32, n_heads=1, n_ctx=8, n_vocab=300, d_ff=256),          # ratio 8
    dict(n_layer=2, d_model=40, n_heads=4, d_head=16, n_ctx=8, n_vocab=300),         # d_attn ≠ d_model
]


def _tree_sizes(cfg):
  model = nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0)))
  params = nnx.state(model, nnx.Param)
  total = emb = 0
  for path, leaf in jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(params))[0]:
    keys = tuple(getattr(k, "key", getattr(k, "idx", None)) for k in path)
    total += math.prod(leaf.shape)
    emb += math.prod(leaf.shape) if is_embedding_path(keys) else 0
  return total, emb


@pytest.mark.parametrize("shape", SHAPES)
def test_closed_form_equals_parameter_tree(shape):
  cfg = ModelConfig(**shape)
  counts = param_count(cfg)
  total, emb = _tree_sizes(cfg)
  assert counts["n_total"] == total
  assert counts["n_embedding"] == emb
  assert counts["n_exact_nonemb"] == total - emb


def test_hand_count_small_model():
  # 1 layer, d_model 32, d_attn 32, d_ff 128, by hand:
  # weights 3·32·32 + 32·32 + 32·128 + 128·32 = 3072 + 1024 + 4096 + 4096 = 12288 (= 12·32²)
  # biases 96 + 32 + 128 + 32 = 288; LayerNorms 4·32 = 128; final LayerNorm 64.
  counts = param_count(ModelConfig(n_layer=1, d_model=32, n_heads=2, n_ctx=16, n_vocab=300))
  assert counts["n_kaplan"] == 12288
  assert counts["n_exact_nonemb"] == 12288 + 288 + 128 + 64
  assert counts["n_embedding"] == 300 * 32 + 16 * 32


def test_gpt2_small_counts():
  # SCIENCE.md §1.2 check values for GPT-2 small (the published "124M").
  cfg = ModelConfig(n_layer=12, d_model=768, n_heads=12, n_ctx=1024, n_vocab=50257)
  counts = param_count(cfg)
  assert counts["n_kaplan"] == 84_934_656
  assert counts["n_exact_nonemb"] == 85_056_000
  assert counts["n_total"] == 124_439_808


def test_flops_hand_count():
  # n_layer 2, d_model 64, n_heads 2 (d_attn 64), d_ff 256, n_ctx 32, n_vocab 100.
  cfg = ModelConfig(n_layer=2, d_model=64, n_heads=2, n_ctx=32, n_vocab=100)
  f = flops_per_token(cfg)
  per_layer_matmuls = 2 * (64 * 192 + 64 * 64 + 64 * 256 + 256 * 64)   # 2·(12288+4096+16384+16384)
  assert per_layer_matmuls == 98304
  n = 2 * 49152
  assert f["kaplan_train"] == 6 * n == 589824
  assert f["context_fwd"] == 2 * 2 * 32 * 64 == 8192
  assert f["kaplan_fwd"] == 2 * per_layer_matmuls + 8192
  assert f["unembedding_fwd"] == 2 * 64 * 100
  # PaLM: 6N + 12·n_layer·d_attn·n_ctx + 6·d_model·n_vocab
  assert f["palm_train"] == 589824 + 12 * 2 * 64 * 32 + 6 * 64 * 100


def test_flops_nondefault_shape():
  # 4 heads of 16 (d_attn 64) in a 40-wide model with d_ff = 2·d_model.
  cfg = ModelConfig(n_layer=3, d_model=40, n_heads=4, d_head=16, d_ff=80, n_ctx=8, n_vocab=300)
  n = 3 * (40 * 192 + 64 * 40 + 40 * 80 + 80 * 40)
  assert param_count(cfg)["n_kaplan"] == n
  assert flops_per_token(cfg)["kaplan_fwd"] == 2 * n + 2 * 3 * 8 * 64


def test_kaplan_lr_values():
  # SCIENCE.md §3.1: 1.95e-3 at N = 1e4, 1.31e-3 at 1e6, 3.5e-4 at 1e9.
  assert kaplan_learning_rate(1e4) == pytest.approx(1.95e-3, abs=1e-5)
  assert kaplan_learning_rate(1e6) == pytest.approx(1.31e-3, abs=1e-5)
  assert kaplan_learning_rate(1e9) == pytest.approx(3.5e-4, abs=1e-5)


def test_forward_shape_causal_and_initial_loss():
  cfg = ModelConfig(n_layer=2, d_model=32, n_heads=2, n_ctx=16, n_vocab=300)
  model = Transformer(cfg, rngs=nnx.Rngs(0))
  tokens = jax.random.randint(jax.random.key(1), (3, 16), 0, 300)
  logits = model(tokens)
  assert logits.shape == (3, 16, 300)
  changed = tokens.at[:, 10].set((tokens[:, 10] + 1) % 300)
  np.testing.assert_allclose(model(changed)[:, :10], logits[:, :10], rtol=1e-5, atol=1e-5)
  assert not np.allclose(model(changed)[:, 10:], logits[:, 10:])
  # At initialization the loss is near ln(V) (small random logits).
  targets = jax.random.randint(jax.random.key(2), (3, 16), 0, 300)
  loss = cross_entropy(logits, targets)
  assert abs(float(loss) - math.log(300)) < 0.1


def test_cross_entropy_matches_direct_formula():
  logits = jax.random.normal(jax.random.key(0), (2, 3, 7))
  targets = jnp.array([[0, 6, 3], [2, 2, 1]])
  probs = np.exp(np.asarray(logits)) / np.exp(np.asarray(logits)).sum(-1, keepdims=True)
  direct = -np.mean([np.log(probs[b, t, targets[b, t]]) for b in range(2) for t in range(3)])
  assert float(cross_entropy(logits, targets)) == pytest.approx(direct, rel=1e-5)


@pytest.mark.parametrize("bad", [dict(d_model=30, n_heads=4), dict(n_layer=0), dict(n_ctx=-1)])
def test_bad_shapes_rejected(bad):
  shape = dict(n_layer=1, d_model=32, n_heads=2, n_ctx=16, n_vocab=300) | bad
  with pytest.raises(UserError):
    ModelConfig(**shape).validate()


@pytest.mark.parametrize("n_ctx", [16, 96, 128, 256])   # 1, 1, 2 and 4 causal blocks
def test_blocked_attention_equals_jax_attention(n_ctx):
  from scaling.model import attention
  q, k, v = (jax.random.normal(jax.random.key(i), (2, n_ctx, 3, 8)) for i in range(3))
  np.testing.assert_allclose(attention(q, k, v, "explicit"), attention(q, k, v, "xla"),
                             atol=2e-6)
  loss = lambda impl: lambda q, k, v: jnp.sum(attention(q, k, v, impl) * v)
  for a, b in zip(jax.grad(loss("explicit"), argnums=(0, 1, 2))(q, k, v),
                  jax.grad(loss("xla"), argnums=(0, 1, 2))(q, k, v)):
    np.testing.assert_allclose(a, b, atol=2e-5)


@pytest.mark.parametrize("tie, chunk", [(True, 0), (True, 7), (False, 16), (False, 1000)])
def test_fused_cross_entropy_equals_logits_then_cross_entropy(tie, chunk):
  cfg = ModelConfig(n_layer=2, d_model=32, n_heads=2, n_ctx=16, n_vocab=300, tie_embeddings=tie)
  graphdef, params = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)), nnx.Param)
  tokens = jax.random.randint(jax.random.key(1), (4, 17), 0, 300)
  direct = lambda p: cross_entropy(nnx.merge(graphdef, p)(tokens[:, :-1]), tokens[:, 1:])
  fused = lambda p: nnx.merge(graphdef, p).loss(tokens[:, :-1], tokens[:, 1:], chunk=chunk)
  (l1, g1), (l2, g2) = jax.value_and_grad(direct)(params), jax.jit(jax.value_and_grad(fused))(params)
  assert float(l2) == pytest.approx(float(l1), rel=1e-6)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
    np.testing.assert_allclose(a, b, atol=1e-6)

"""Parameter and FLOP counts against the real parameter tree and hand counts; model behaviour."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import tree_sizes
from scaling.errors import UserError
from scaling.laws.forms import kaplan_learning_rate
from scaling.model.transformer import ModelConfig, Transformer, cross_entropy, flop_per_token, param_count

SHAPES = [
    dict(n_layer=1, d_model=32, n_heads=2, n_ctx=16, n_vocab=300),
    dict(n_layer=3, d_model=48, n_heads=3, n_ctx=24, n_vocab=500, tie_embeddings=False),
    dict(n_layer=2, d_model=64, n_heads=8, n_ctx=32, n_vocab=260, d_ff=64),          # ratio 1
    dict(n_layer=2, d_model=32, n_heads=1, n_ctx=8, n_vocab=300, d_ff=256),          # ratio 8
    dict(n_layer=2, d_model=40, n_heads=4, d_head=16, n_ctx=8, n_vocab=300),         # d_attn ≠ d_model
]


@pytest.mark.parametrize("shape", SHAPES)
def test_closed_form_equals_parameter_tree(shape):
  cfg = ModelConfig(**shape)
  counts = param_count(cfg)
  sizes = tree_sizes(cfg)
  assert counts.n_total == sizes["total"]
  assert counts.n_embedding == sizes["embedding"]
  assert counts.n_exact_nonemb == sizes["total"] - sizes["embedding"]
  assert counts.n_kaplan == sizes["block_kernels"]


def test_hand_count_small_model():
  # 1 layer, d_model 32, d_attn 32, d_ff 128, by hand:
  # weights 3·32·32 + 32·32 + 32·128 + 128·32 = 3072 + 1024 + 4096 + 4096 = 12288 (= 12·32²)
  # biases 96 + 32 + 128 + 32 = 288; LayerNorms 4·32 = 128; final LayerNorm 64.
  counts = param_count(ModelConfig(n_layer=1, d_model=32, n_heads=2, n_ctx=16, n_vocab=300))
  assert counts.n_kaplan == 12288
  assert counts.n_exact_nonemb == 12288 + 288 + 128 + 64
  assert counts.n_embedding == 300 * 32 + 16 * 32


def test_gpt2_small_counts():
  # Check values for GPT-2 small (the published "124M", Radford et al. 2019).
  cfg = ModelConfig(n_layer=12, d_model=768, n_heads=12, n_ctx=1024, n_vocab=50257)
  counts = param_count(cfg)
  assert counts.n_kaplan == 84_934_656
  assert counts.n_exact_nonemb == 85_056_000
  assert counts.n_total == 124_439_808


def test_flops_hand_count():
  # n_layer 2, d_model 64, n_heads 2 (d_attn 64), d_ff 256, n_ctx 32, n_vocab 100.
  cfg = ModelConfig(n_layer=2, d_model=64, n_heads=2, n_ctx=32, n_vocab=100)
  f = flop_per_token(cfg)
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
  assert param_count(cfg).n_kaplan == n
  assert flop_per_token(cfg)["kaplan_fwd"] == 2 * n + 2 * 3 * 8 * 64


def test_kaplan_lr_values():
  # Kaplan 2020 eq. D.1 by hand: 0.003239 − 0.0001395·ln N = 1.95e-3 at N = 1e4, 1.31e-3 at 1e6, 3.5e-4 at 1e9.
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


# 1 and 8 causal blocks; the 8-block case runs the first block too (10 s saved by default).
@pytest.mark.parametrize("n_ctx", [pytest.param(16, marks=pytest.mark.slow), 256])
def test_blocked_attention_equals_jax_attention(n_ctx):
  from scaling.model.transformer import attention
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
  (l1, g1), (l2, g2) = (jax.jit(jax.value_and_grad(f))(params) for f in (direct, fused))
  assert float(l2) == pytest.approx(float(l1), rel=1e-6)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 128, 2, 128, 512), (2, 256, 4, 64, 1024)])
def test_palm_flop_count_against_xla_cost_analysis(shape):
  # XLA's own count of the jitted loss-and-gradient program, an independent reference. With the
  # full (unblocked) attention matrix, PaLM's 6N + 12·n_layer·d_attn·n_ctx + 6·d_model·n_vocab
  # per token covers every matmul; what XLA counts beyond it is elementwise work (softmax,
  # LayerNorm, GELU, AdamW-free here), measured at 0.6-2.1% on these shapes.
  from scaling.train.step import lm_loss
  n_layer, d_model, n_heads, n_ctx, n_vocab = shape
  cfg = ModelConfig(n_layer=n_layer, d_model=d_model, n_heads=n_heads, n_ctx=n_ctx,
                    n_vocab=n_vocab, attention="xla")
  graphdef, params = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)), nnx.Param)
  batch = 4
  compiled = jax.jit(jax.value_and_grad(lm_loss(graphdef))).lower(
      params, jnp.zeros((batch, n_ctx + 1), jnp.int32)).compile()
  cost = compiled.cost_analysis()
  xla_flop = (cost[0] if isinstance(cost, list) else cost)["flops"]
  ours_flop = flop_per_token(cfg)["palm_train"] * batch * n_ctx
  assert 1.0 <= xla_flop / ours_flop < 1.04, xla_flop / ours_flop
  # Kaplan's 6N leaves out attention and the unembedding: XLA's count is clearly above it.
  assert xla_flop / (flop_per_token(cfg)["kaplan_train"] * batch * n_ctx) > 1.05

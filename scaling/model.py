"""Decoder-only transformer (Flax NNX) and its exact parameter and FLOP counts.

Shape suffixes: B batch, L context positions, D d_model, H heads, K d_head, F d_ff, V vocabulary.
The architecture is Kaplan et al. 2020's GPT-2 style setup: pre-LayerNorm blocks, learned
positions, GELU MLP, biases on every linear layer, one final LayerNorm, optionally tied unembedding.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from scaling.errors import UserError


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  n_layer: int
  d_model: int
  n_heads: int
  n_ctx: int
  n_vocab: int
  d_head: int = 0          # 0: d_model // n_heads (so d_attn = d_model, Kaplan's default)
  d_ff: int = 0            # 0: 4 * d_model
  tie_embeddings: bool = True
  compute_dtype: str = "float32"

  @property
  def head_dim(self) -> int:
    return self.d_head or self.d_model // self.n_heads

  @property
  def d_attn(self) -> int:
    return self.n_heads * self.head_dim

  @property
  def ff_dim(self) -> int:
    return self.d_ff or 4 * self.d_model

  def validate(self) -> "ModelConfig":
    for name in ("n_layer", "d_model", "n_heads", "n_ctx", "n_vocab"):
      value = getattr(self, name)
      if not isinstance(value, int) or value <= 0:
        raise UserError(f"model.{name} must be a positive integer, got {value!r}")
    for name in ("d_head", "d_ff"):
      value = getattr(self, name)
      if not isinstance(value, int) or value < 0:
        raise UserError(f"model.{name} must be a non-negative integer (0 = default), got {value!r}")
    if not self.d_head and self.d_model % self.n_heads:
      raise UserError(f"model.d_model={self.d_model} is not divisible by model.n_heads="
                      f"{self.n_heads}; change one or set model.d_head explicitly")
    if self.compute_dtype not in ("float32", "bfloat16", "float16"):
      raise UserError(f"model.compute_dtype must be float32, bfloat16 or float16, "
                      f"got {self.compute_dtype!r}")
    return self

  @classmethod
  def from_config(cls, cfg) -> "ModelConfig":
    """From a ConfigDict (or dict) holding at least the required fields."""
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in dict(cfg).items() if k in fields}
    return cls(**values).validate()


# ---------------------------------------------------------------------------------------------
# Closed-form counts.


def param_count(cfg: ModelConfig) -> dict[str, int]:
  """Parameter counts in closed form (SCIENCE.md §1).

  n_kaplan: Kaplan 2020 §2.1, N = 2·d_model·n_layer·(2·d_attn + d_ff), weights of the blocks only.
  n_exact_nonemb: every non-embedding parameter of this implementation (biases, LayerNorms,
    final LayerNorm), SCIENCE.md §1.2.
  n_embedding: token and position embeddings, plus the unembedding when untied (no bias).
  n_total: n_exact_nonemb + n_embedding = size of the real parameter tree.
  """
  d, a, f, n_l = cfg.d_model, cfg.d_attn, cfg.ff_dim, cfg.n_layer
  # Kaplan 2020, §2.1 / Table 1: N = 2·d_model·n_layer·(2·d_attn + d_ff).
  n_kaplan = 2 * d * n_l * (2 * a + f)
  biases = 3 * a + d + f + d        # q,k,v; attention out; MLP in; MLP out
  layernorms = 2 * 2 * d            # two LayerNorms per block, scale and bias
  n_exact = n_l * (2 * d * (2 * a + f) + biases + layernorms) + 2 * d  # + final LayerNorm
  n_embedding = cfg.n_vocab * d + cfg.n_ctx * d
  if not cfg.tie_embeddings:
    n_embedding += cfg.n_vocab * d
  return {
      "n_kaplan": n_kaplan,
      "n_exact_nonemb": n_exact,
      "n_embedding": n_embedding,
      "n_total": n_exact + n_embedding,
  }


def flops_per_token(cfg: ModelConfig) -> dict[str, float]:
  """FLOPs per token (SCIENCE.md §2); one multiply-add = 2 FLOPs.

  kaplan_fwd: 2·N + 2·n_layer·n_ctx·d_attn (Kaplan 2020, Table 1), N = n_kaplan.
  kaplan_train: 6·N (Kaplan 2020 §2.1, C ≈ 6NBS): context term and unembedding dropped.
  context_fwd: 2·n_layer·n_ctx·d_attn, the attention-score term of Kaplan's Table 1.
  unembedding_fwd / unembedding_train: 2·d_model·n_vocab and 6·d_model·n_vocab (SCIENCE.md §2.3).
  palm_train: 6·N + 12·n_layer·d_attn·n_ctx + 6·d_model·n_vocab (PaLM appendix B with the full,
    unmasked attention matrix, N non-embedding, plus the logits matmul): the count behind MFU.
  chinchilla_train: 6·N_total (Hoffmann 2022, C ≈ 6ND with N counting every parameter).
  """
  counts = param_count(cfg)
  n = counts["n_kaplan"]
  context_fwd = 2 * cfg.n_layer * cfg.n_ctx * cfg.d_attn
  unemb_fwd = 2 * cfg.d_model * cfg.n_vocab
  return {
      "kaplan_fwd": float(2 * n + context_fwd),
      "kaplan_train": float(6 * n),
      "context_fwd": float(context_fwd),
      "unembedding_fwd": float(unemb_fwd),
      "unembedding_train": float(3 * unemb_fwd),
      # PaLM (Chowdhery 2022) appendix B: 6N + 12·n_layer·d_attn·n_ctx, plus 6·d_model·n_vocab.
      "palm_train": float(6 * n + 12 * cfg.n_layer * cfg.d_attn * cfg.n_ctx + 3 * unemb_fwd),
      "chinchilla_train": float(6 * counts["n_total"]),
  }


def kaplan_learning_rate(n_params: float) -> float:
  """Kaplan 2020 appendix D.2 (Eq. D.1): LR(N) ≈ 0.003239 − 0.0001395·ln(N)."""
  if n_params <= 0:
    raise UserError(f"LR(N) needs a positive parameter count, got {n_params}")
  return 0.003239 - 0.0001395 * math.log(n_params)


# ---------------------------------------------------------------------------------------------
# The network.


class Block(nnx.Module):
  """Pre-LayerNorm block: x + Attn(LN(x)), then x + MLP(LN(x))."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    d, a, f = cfg.d_model, cfg.d_attn, cfg.ff_dim
    dtype = jnp.dtype(cfg.compute_dtype)
    init = nnx.initializers.normal(0.02)
    # GPT-2: residual projections scaled by 1/sqrt(2·n_layer).
    init_out = nnx.initializers.normal(0.02 / math.sqrt(2 * cfg.n_layer))
    self.n_heads, self.d_head = cfg.n_heads, cfg.head_dim
    self.ln_attn = nnx.LayerNorm(d, epsilon=1e-5, dtype=dtype, rngs=rngs)
    self.qkv = nnx.Linear(d, 3 * a, kernel_init=init, dtype=dtype, rngs=rngs)
    self.attn_out = nnx.Linear(a, d, kernel_init=init_out, dtype=dtype, rngs=rngs)
    self.ln_mlp = nnx.LayerNorm(d, epsilon=1e-5, dtype=dtype, rngs=rngs)
    self.mlp_in = nnx.Linear(d, f, kernel_init=init, dtype=dtype, rngs=rngs)
    self.mlp_out = nnx.Linear(f, d, kernel_init=init_out, dtype=dtype, rngs=rngs)

  def __call__(self, x_BLD: jax.Array) -> jax.Array:
    b, l, _ = x_BLD.shape
    qkv_BL3A = self.qkv(self.ln_attn(x_BLD))
    qkv_BL3HK = qkv_BL3A.reshape(b, l, 3, self.n_heads, self.d_head)
    q_BLHK, k_BLHK, v_BLHK = (qkv_BL3HK[:, :, i] for i in range(3))
    o_BLHK = jax.nn.dot_product_attention(q_BLHK, k_BLHK, v_BLHK, is_causal=True)
    x_BLD = x_BLD + self.attn_out(o_BLHK.reshape(b, l, self.n_heads * self.d_head))
    h_BLF = jax.nn.gelu(self.mlp_in(self.ln_mlp(x_BLD)), approximate=True)
    return x_BLD + self.mlp_out(h_BLF)


class Transformer(nnx.Module):
  """Token ids (B, L) → logits (B, L, V)."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    cfg.validate()
    self.cfg = cfg
    dtype = jnp.dtype(cfg.compute_dtype)
    init = nnx.initializers.normal(0.02)
    self.embed = nnx.Embed(cfg.n_vocab, cfg.d_model, embedding_init=init, dtype=dtype, rngs=rngs)
    self.pos_embed = nnx.Embed(cfg.n_ctx, cfg.d_model, embedding_init=nnx.initializers.normal(0.01),
                               dtype=dtype, rngs=rngs)
    self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.n_layer)])
    self.ln_final = nnx.LayerNorm(cfg.d_model, epsilon=1e-5, dtype=dtype, rngs=rngs)
    if not cfg.tie_embeddings:
      self.unembed = nnx.Linear(cfg.d_model, cfg.n_vocab, use_bias=False, kernel_init=init,
                                dtype=dtype, rngs=rngs)

  def __call__(self, tokens_BL: jax.Array) -> jax.Array:
    _, l = tokens_BL.shape
    x_BLD = self.embed(tokens_BL) + self.pos_embed(jnp.arange(l))[None]
    for block in self.blocks:
      x_BLD = block(x_BLD)
    x_BLD = self.ln_final(x_BLD)
    if self.cfg.tie_embeddings:
      logits_BLV = self.embed.attend(x_BLD)
    else:
      logits_BLV = self.unembed(x_BLD)
    return logits_BLV.astype(jnp.float32)


def is_embedding_path(path: tuple) -> bool:
  """True for the parameter-tree leaves that param_count() calls embedding parameters."""
  return bool(path) and path[0] in ("embed", "pos_embed", "unembed")


def cross_entropy(logits_BLV: jax.Array, targets_BL: jax.Array) -> jax.Array:
  """Mean next-token cross-entropy in nats/token over every position (Kaplan 2020 §2)."""
  logz_BL = jax.nn.logsumexp(logits_BLV, axis=-1)
  target_logit_BL = jnp.take_along_axis(logits_BLV, targets_BL[..., None], axis=-1)[..., 0]
  return jnp.mean(logz_BL - target_logit_BL)

"""Decoder-only transformer (Flax NNX) and its exact parameter and FLOP counts.

Shape suffixes (one meaning per letter): B batch (sequences), L context positions, T tokens
(B·L rows), D d_model, A d_attn (H·K), H heads, K d_head, F d_ff, V vocabulary, 3 the q/k/v
triple; in blocked attention Q a query block's positions and S the key positions it meets; in the
fused cross-entropy G chunks of U tokens each; 1 a size-1 axis.
The architecture is Kaplan et al. 2020's GPT-2 style setup: pre-LayerNorm blocks, learned
positions, GELU MLP, biases on every linear layer, one final LayerNorm, optionally tied unembedding.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scaling.errors import UserError
from scaling.model import kernels


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
  attention: str = "auto"  # auto | explicit | xla | cudnn (see resolve_attention)
  loss_chunk: int = 0       # tokens per chunk of the fused cross-entropy (0: by platform)
  # The (in, out) features of the linear layers whose weight gradient is formed from a copy of xᵀ
  # (scaling/model/kernels.py); empty: plain layers. The trainer fills it for model.weight_grad.
  copy_xt: tuple[tuple[int, int], ...] = ()

  @property
  def head_dim(self) -> int:
    return self.d_head or self.d_model // self.n_heads

  @property
  def d_attn(self) -> int:
    return self.n_heads * self.head_dim

  @property
  def ff_dim(self) -> int:
    return self.d_ff or 4 * self.d_model

  def biased_linears(self) -> tuple[tuple[int, int], ...]:
    """(in, out) features of each block's linear layers: qkv, attention output, MLP in and out."""
    d, a, f = self.d_model, self.d_attn, self.ff_dim
    return ((d, 3 * a), (a, d), (d, f), (f, d))

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
    if self.attention not in ("auto", "explicit", "xla", "cudnn"):
      raise UserError(f"model.attention must be auto, explicit, xla or cudnn, got {self.attention!r}")
    if not set(self.copy_xt) <= set(self.biased_linears()):
      raise UserError(f"model.copy_xt {self.copy_xt!r} names layers the model does not have "
                      f"(its (in, out) shapes: {self.biased_linears()})")
    if self.compute_dtype not in ("float32", "bfloat16", "float16"):
      raise UserError(f"model.compute_dtype must be float32, bfloat16 or float16, "
                      f"got {self.compute_dtype!r}")
    return self

  @classmethod
  def from_config(cls, section) -> "ModelConfig":
    """From a ConfigDict (or dict) holding at least the required fields."""
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in dict(section).items() if k in fields}
    return cls(**values).validate()


# ---------------------------------------------------------------------------------------------
# Closed-form counts.


class ParamCount(NamedTuple):
  """A model's parameter counts (param_count)."""
  n_kaplan: int
  n_exact_nonemb: int
  n_embedding: int
  n_total: int


def param_count(mcfg: ModelConfig) -> ParamCount:
  """Parameter counts in closed form (Kaplan et al. 2020, arXiv 2001.08361, §2.1 and Table 1).

  n_kaplan: Kaplan 2020 §2.1, N = 2·d_model·n_layer·(2·d_attn + d_ff), weights of the blocks only.
  n_exact_nonemb: every non-embedding parameter of this implementation (biases, LayerNorms,
    final LayerNorm), counted layer by layer from the architecture below.
  n_embedding: token and position embeddings, plus the unembedding when untied (no bias).
  n_total: n_exact_nonemb + n_embedding = size of the real parameter tree.
  """
  d, a, f, n_l = mcfg.d_model, mcfg.d_attn, mcfg.ff_dim, mcfg.n_layer
  # Kaplan 2020, §2.1 / Table 1: N = 2·d_model·n_layer·(2·d_attn + d_ff).
  n_kaplan = 2 * d * n_l * (2 * a + f)
  biases = 3 * a + d + f + d        # q,k,v; attention out; MLP in; MLP out
  layernorms = 2 * 2 * d            # two LayerNorms per block, scale and bias
  n_exact = n_l * (2 * d * (2 * a + f) + biases + layernorms) + 2 * d  # + final LayerNorm
  n_embedding = mcfg.n_vocab * d + mcfg.n_ctx * d
  if not mcfg.tie_embeddings:
    n_embedding += mcfg.n_vocab * d
  return ParamCount(n_kaplan=n_kaplan, n_exact_nonemb=n_exact, n_embedding=n_embedding,
                    n_total=n_exact + n_embedding)


def flop_per_token(mcfg: ModelConfig) -> dict[str, float]:
  """FLOPs per token (Kaplan 2020 Table 1; PaLM, arXiv 2204.02311, app. B); a multiply-add = 2.

  kaplan_fwd: 2·N + 2·n_layer·n_ctx·d_attn (Kaplan 2020, Table 1), N = n_kaplan.
  kaplan_train: 6·N (Kaplan 2020 §2.1, C ≈ 6NBS): context term and unembedding dropped.
  context_fwd: 2·n_layer·n_ctx·d_attn, the attention-score term of Kaplan's Table 1.
  unembedding_fwd / unembedding_train: 2·d_model·n_vocab and 6·d_model·n_vocab (the logits
    matmul forward, and forward + backward).
  palm_train: 6·N + 12·n_layer·d_attn·n_ctx + 6·d_model·n_vocab (PaLM appendix B with the full,
    unmasked attention matrix, N non-embedding, plus the logits matmul): the count behind MFU.
  chinchilla_train: 6·N_total (Hoffmann 2022, C ≈ 6ND with N counting every parameter).
  """
  counts = param_count(mcfg)
  n = counts.n_kaplan
  context_fwd = 2 * mcfg.n_layer * mcfg.n_ctx * mcfg.d_attn
  unemb_fwd = 2 * mcfg.d_model * mcfg.n_vocab
  return {
      "kaplan_fwd": float(2 * n + context_fwd),
      "kaplan_train": float(6 * n),
      "context_fwd": float(context_fwd),
      "unembedding_fwd": float(unemb_fwd),
      "unembedding_train": float(3 * unemb_fwd),
      # PaLM (Chowdhery 2022) appendix B: 6N + 12·n_layer·d_attn·n_ctx, plus 6·d_model·n_vocab.
      "palm_train": float(6 * n + 12 * mcfg.n_layer * mcfg.d_attn * mcfg.n_ctx + 3 * unemb_fwd),
      "chinchilla_train": float(6 * counts.n_total),
  }


# ---------------------------------------------------------------------------------------------
# The network.


def resolve_attention(name: str) -> str:
  """"auto": the explicit softmax(QKᵀ)V below on CPU (measured faster there), JAX's
  dot_product_attention elsewhere (which takes the fused cuDNN kernel on GPU when it applies)."""
  if name == "auto":
    return "explicit" if jax.default_backend() == "cpu" else "xla"
  return name


def attention(q_BLHK: jax.Array, k_BLHK: jax.Array, v_BLHK: jax.Array, impl: str) -> jax.Array:
  """Causal multi-head attention, softmax(q·kᵀ/√d_head)·v (Vaswani et al. 2017, Eq. 1)."""
  if impl in ("xla", "cudnn"):
    return jax.nn.dot_product_attention(q_BLHK, k_BLHK, v_BLHK, is_causal=True,
                                        implementation=None if impl == "xla" else "cudnn")
  l, d_head = q_BLHK.shape[1], q_BLHK.shape[-1]
  # Heads-major layout: each head's scores are one matmul. Causal blocks: query block i only
  # meets key blocks 0..i, which skips the masked upper blocks (a quarter to seven sixteenths of the
  # score work); the result is the same as one masked (L, L) softmax. 8 blocks from 256
  # positions: on 2 CPU cores, (4,256,4) at context 256 reached an MFU(pair) 1.8 and 1.0 points
  # above 4 blocks in two interleaved A/B rounds (1 and 2 blocks were slower).
  n_blocks = 8 if l >= 256 and l % 8 == 0 else (2 if l >= 128 and l % 2 == 0 else 1)
  q_len = l // n_blocks
  q_BHLK, k_BHLK, v_BHLK = (jnp.swapaxes(x, 1, 2) for x in (q_BLHK * d_head ** -0.5, k_BLHK,
                                                           v_BLHK))
  diag_QQ = jnp.tril(jnp.ones((q_len, q_len), bool))
  outs = []
  for i in range(n_blocks):
    keys = (i + 1) * q_len
    scores_BHQS = jnp.einsum("bhqk,bhsk->bhqs", q_BHLK[:, :, i * q_len:keys], k_BHLK[:, :, :keys])
    causal_QS = jnp.concatenate([jnp.ones((q_len, i * q_len), bool), diag_QQ], axis=1)
    scores_BHQS = jnp.where(causal_QS, scores_BHQS, jnp.finfo(scores_BHQS.dtype).min)
    probs_BHQS = jax.nn.softmax(scores_BHQS.astype(jnp.float32), axis=-1).astype(v_BHLK.dtype)
    outs.append(jnp.einsum("bhqs,bhsk->bhqk", probs_BHQS, v_BHLK[:, :, :keys]))
  return jnp.swapaxes(jnp.concatenate(outs, axis=2), 1, 2)


class Block(nnx.Module):
  """Pre-LayerNorm block: x + Attn(LN(x)), then x + MLP(LN(x))."""

  def __init__(self, mcfg: ModelConfig, *, rngs: nnx.Rngs):
    d, a, f = mcfg.d_model, mcfg.d_attn, mcfg.ff_dim
    dtype = jnp.dtype(mcfg.compute_dtype)
    init = nnx.initializers.normal(0.02)
    # GPT-2: residual projections scaled by 1/sqrt(2·n_layer).
    init_out = nnx.initializers.normal(0.02 / math.sqrt(2 * mcfg.n_layer))
    self.n_heads, self.d_head = mcfg.n_heads, mcfg.head_dim
    self.impl = resolve_attention(mcfg.attention)
    self.copy_xt = mcfg.copy_xt
    self.ln_attn = nnx.LayerNorm(d, epsilon=1e-5, dtype=dtype, rngs=rngs)
    self.qkv = nnx.Linear(d, 3 * a, kernel_init=init, dtype=dtype, rngs=rngs)
    self.attn_out = nnx.Linear(a, d, kernel_init=init_out, dtype=dtype, rngs=rngs)
    self.ln_mlp = nnx.LayerNorm(d, epsilon=1e-5, dtype=dtype, rngs=rngs)
    self.mlp_in = nnx.Linear(d, f, kernel_init=init, dtype=dtype, rngs=rngs)
    self.mlp_out = nnx.Linear(f, d, kernel_init=init_out, dtype=dtype, rngs=rngs)

  def __call__(self, x_TD: jax.Array, n_seq: int, n_pos: int) -> jax.Array:
    """x_TD: the residual stream of n_seq sequences of n_pos positions, flattened to
    T = n_seq·n_pos rows (2-D matmuls are the fast path of XLA's CPU backend; the result is the
    same)."""
    linear = lambda layer, x: kernels.linear(layer, x, self.copy_xt)
    qkv_T3A = linear(self.qkv, self.ln_attn(x_TD))
    qkv_BL3HK = qkv_T3A.reshape(n_seq, n_pos, 3, self.n_heads, self.d_head)
    o_BLHK = attention(qkv_BL3HK[:, :, 0], qkv_BL3HK[:, :, 1], qkv_BL3HK[:, :, 2], self.impl)
    x_TD = x_TD + linear(self.attn_out, o_BLHK.reshape(n_seq * n_pos, self.n_heads * self.d_head))
    h_TF = jax.nn.gelu(linear(self.mlp_in, self.ln_mlp(x_TD)), approximate=True)
    return x_TD + linear(self.mlp_out, h_TF)


class Transformer(nnx.Module):
  """Token ids (B, L) → logits (B, L, V)."""

  def __init__(self, mcfg: ModelConfig, *, rngs: nnx.Rngs):
    mcfg.validate()
    self.mcfg = mcfg
    dtype = jnp.dtype(mcfg.compute_dtype)
    init = nnx.initializers.normal(0.02)
    self.embed = nnx.Embed(mcfg.n_vocab, mcfg.d_model, embedding_init=init, dtype=dtype, rngs=rngs)
    self.pos_embed = nnx.Embed(mcfg.n_ctx, mcfg.d_model, embedding_init=nnx.initializers.normal(0.01),
                               dtype=dtype, rngs=rngs)
    self.blocks = nnx.List([Block(mcfg, rngs=rngs) for _ in range(mcfg.n_layer)])
    self.ln_final = nnx.LayerNorm(mcfg.d_model, epsilon=1e-5, dtype=dtype, rngs=rngs)
    if not mcfg.tie_embeddings:
      self.unembed = nnx.Linear(mcfg.d_model, mcfg.n_vocab, use_bias=False, kernel_init=init,
                                dtype=dtype, rngs=rngs)

  def hidden(self, tokens_BL: jax.Array) -> jax.Array:
    """The final-LayerNorm output, flattened to (B·L, D): the input of the unembedding."""
    b, l = tokens_BL.shape
    x_BLD = self.embed(tokens_BL) + self.pos_embed(jnp.arange(l))[None]
    x_TD = x_BLD.reshape(b * l, -1)
    for block in self.blocks:
      x_TD = block(x_TD, b, l)
    return self.ln_final(x_TD)

  def unembedding(self) -> jax.Array:
    """The (V, D) matrix whose rows score each vocabulary entry."""
    if self.mcfg.tie_embeddings:
      return self.embed.embedding[...]
    return self.unembed.kernel[...].T

  def __call__(self, tokens_BL: jax.Array) -> jax.Array:
    """Token ids (B, L) → logits (B, L, V) in float32."""
    b, l = tokens_BL.shape
    x_TD = self.hidden(tokens_BL)
    w_VD = self.unembedding().astype(x_TD.dtype)
    return (x_TD @ w_VD.T).astype(jnp.float32).reshape(b, l, -1)

  def loss(self, tokens_BL: jax.Array, targets_BL: jax.Array, chunk: int = 0) -> jax.Array:
    """Mean next-token cross-entropy without materializing all logits (fused_cross_entropy)."""
    x_TD = self.hidden(tokens_BL)
    return fused_cross_entropy(x_TD, self.unembedding().astype(x_TD.dtype),
                               targets_BL.reshape(-1), chunk or self.mcfg.loss_chunk)


def is_embedding_path(path: tuple) -> bool:
  """True for the parameter-tree leaves that param_count() calls embedding parameters."""
  return bool(path) and path[0] in ("embed", "pos_embed", "unembed")


def cross_entropy(logits_BLV: jax.Array, targets_BL: jax.Array) -> jax.Array:
  """Mean next-token cross-entropy in nats/token over every position (Kaplan 2020 §2)."""
  logz_BL = jax.nn.logsumexp(logits_BLV, axis=-1)
  target_logit_BL = jnp.take_along_axis(logits_BLV, targets_BL[..., None], axis=-1)[..., 0]
  return jnp.mean(logz_BL - target_logit_BL)


def _loss_chunk(n_tokens: int, chunk: int) -> int:
  """The largest divisor of n_tokens not above `chunk` (0: 512 on CPU, where a chunk of logits
  that stays in cache measured fastest, and all tokens at once on accelerators)."""
  chunk = chunk or (512 if jax.default_backend() == "cpu" else n_tokens)
  chunk = max(1, min(chunk, n_tokens))
  while n_tokens % chunk:
    chunk -= 1
  return chunk


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def fused_cross_entropy(x_TD: jax.Array, w_VD: jax.Array, targets_T: jax.Array,
                        chunk: int = 0) -> jax.Array:
  """mean_t [logsumexp(w·x_t) − (w·x_t)[target_t]], the same number as cross_entropy(x·wᵀ, …).

  Computed chunk by chunk of tokens; the gradient, (softmax − one-hot)/T pushed through the
  unembedding, is formed in the same pass, so the (T, V) logits never exist in memory at once.
  """
  return _fused_ce_fwd(x_TD, w_VD, targets_T, chunk)[0]


def _fused_ce_fwd(x_TD, w_VD, targets_T, chunk):
  n_tok = x_TD.shape[0]
  c = _loss_chunk(n_tok, chunk)
  x_GUD = x_TD.reshape(n_tok // c, c, -1)
  # Layouts chosen so that all three matmuls below have the plain (M,K)·(K,N) form, which XLA's
  # CPU backend hands to its fast matmul library (the transposed-operand form of dW measured
  # 2-4x slower): the unembedding as (D, V), each chunk's tokens also as (D, C).
  xt_GDU = jnp.swapaxes(x_GUD, 1, 2)
  w_DV = w_VD.T
  targets_GU = targets_T.reshape(n_tok // c, c)

  def body(dw_DV, inputs):
    x_UD, xt_DU, t_U = inputs
    logits_UV = (x_UD @ w_DV).astype(jnp.float32)
    m_U1 = jnp.max(logits_UV, axis=-1, keepdims=True)
    e_UV = jnp.exp(logits_UV - m_U1)
    s_U1 = jnp.sum(e_UV, axis=-1, keepdims=True)
    target_logit_U = jnp.take_along_axis(logits_UV, t_U[:, None], axis=-1)[:, 0]
    loss = jnp.sum(m_U1[:, 0] + jnp.log(s_U1[:, 0]) - target_logit_U)
    # d loss_t / d logits_t = softmax_t − onehot(target_t)
    dlogits_UV = (e_UV / s_U1 - jax.nn.one_hot(t_U, logits_UV.shape[-1])).astype(x_UD.dtype)
    dw_DV = dw_DV + (xt_DU @ dlogits_UV).astype(jnp.float32)
    return dw_DV, (loss, dlogits_UV @ w_DV.T)

  # The zero carry is built from w so that it has w's sharding type (varying under shard_map).
  dw_DV, (loss_G, dx_GUD) = jax.lax.scan(body, jnp.zeros_like(w_DV, jnp.float32),
                                         (x_GUD, xt_GDU, targets_GU))
  return jnp.sum(loss_G) / n_tok, (dx_GUD.reshape(x_TD.shape) / n_tok,
                                   (dw_DV.T / n_tok).astype(w_VD.dtype), targets_T)


def _fused_ce_bwd(chunk, residuals, g):
  dx_TD, dw_VD, targets_T = residuals
  return ((g * dx_TD).astype(dx_TD.dtype), (g * dw_VD).astype(dw_VD.dtype),
          np.zeros(targets_T.shape, jax.dtypes.float0))


fused_cross_entropy.defvjp(_fused_ce_fwd, _fused_ce_bwd)

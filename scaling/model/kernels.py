"""The model's one hand-written kernel choice: the matmul form of a linear layer's weight gradient.

Shape suffixes: T rows (tokens), I input features, O output features.

The weight gradient of y_TO = x_TI·w_IO + b_O is x_TIᵀ·dy_TO. XLA hands it to its CPU matmul with
the left operand read transposed, and that form's speed depends on the shape: on 2 cores (fp32,
1,024 rows) I=1024, O=256 ran at 41 GFLOP/s against 58 with xᵀ copied out first and the plain
(M,K)·(K,N) form, while I=256, O=1024 ran at full speed either way and I=256, O=256 lost with the
copy. The copied form is `dense_copied_xt`; its forward pass and its numbers are those of the
plain layer.

The option is explicit and static: `ModelConfig.copy_xt` lists the (in, out) features of the
layers that take the copy (empty: every layer is a plain `nnx.Linear`). Nothing here measures or
writes anything; which shapes are worth the copy on this machine is measured by the trainer
before it builds the step (scaling/train/matmul_forms.py, `model.weight_grad = "auto"`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


@jax.custom_vjp
def dense_copied_xt(x_TI: jax.Array, w_IO: jax.Array, b_O: jax.Array) -> jax.Array:
  """x·w + b; its weight gradient is formed from an explicit copy of xᵀ (the plain matmul form)."""
  return x_TI @ w_IO + b_O


def _fwd(x_TI, w_IO, b_O):
  return x_TI @ w_IO + b_O, (x_TI, w_IO)


def _bwd(residuals, dy_TO):
  x_TI, w_IO = residuals
  # The barrier keeps XLA from folding the transpose back into the matmul's operand.
  xt_IT = jax.lax.optimization_barrier(jnp.swapaxes(x_TI, 0, 1))
  return dy_TO @ w_IO.T, xt_IT @ dy_TO, jnp.sum(dy_TO, axis=0)


dense_copied_xt.defvjp(_fwd, _bwd)


def linear(layer: nnx.Linear, x_TI: jax.Array, copy_xt: tuple) -> jax.Array:
  """layer(x_TI); with its weight gradient from a copy of xᵀ when (in, out) is in copy_xt."""
  if layer.bias is None or (layer.in_features, layer.out_features) not in copy_xt:
    return layer(x_TI)
  dtype = layer.dtype or jnp.result_type(x_TI, layer.kernel[...])
  return dense_copied_xt(x_TI.astype(dtype), layer.kernel[...].astype(dtype),
                         layer.bias[...].astype(dtype))

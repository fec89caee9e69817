"""Reference losses of context-free and one-token-context models of a token store's text.

A transformer's held-out loss is read against them: above the unigram entropy it has learned
nothing; near the bigram loss it has learned the next token from the previous one only. Scaling
laws fitted on runs that all sit above the bigram loss describe that phase of learning, and a
prediction below it crosses into another (see scaling/laws/howbig.py).

Arrays: T (token position), K (distinct pair or context).
"""

from __future__ import annotations

import numpy as np


def first_tokens(parts: list, max_tokens: int) -> np.ndarray:
  """Up to max_tokens tokens from the start of a split given as its list of shards."""
  taken, left = [], max_tokens
  for part in parts:
    if left <= 0:
      break
    taken.append(np.asarray(part[:left], dtype=np.int64))
    left -= taken[-1].size
  return np.concatenate(taken) if taken else np.zeros(0, np.int64)


def bigram_loss(train_parts: list, eval_parts: list, n_vocab: int, max_train_tokens: int = 1 << 24,
                max_eval_tokens: int = 1 << 22) -> float | None:
  """Held-out cross-entropy (nats/token) of a bigram model counted on the training split,
  interpolated with the add-one unigram by Witten–Bell (Witten & Bell 1991; Chen & Goodman 1998,
  §2.5): P(w|h) = (c(h,w) + T(h)·P1(w)) / (c(h) + T(h)), T(h) the distinct followers of h.
  Parameter-free, so its value is a property of the text, not of a tuned smoothing constant.
  Counted on the first 16M training tokens and scored on the first 4M held-out ones; None when a
  split has fewer than two tokens."""
  train = first_tokens(train_parts, max_train_tokens)
  held = first_tokens(eval_parts, max_eval_tokens)
  if train.size < 2 or held.size < 2:
    return None                     # a split too short to count pairs in (e.g. no held-out text)
  p1_V = (np.bincount(train, minlength=n_vocab) + 1.0) / (train.size + n_vocab)
  pairs_K, pair_counts_K = np.unique(train[:-1] * n_vocab + train[1:], return_counts=True)
  context_counts_V = np.bincount(train[:-1], minlength=n_vocab).astype(np.float64)
  followers_V = np.bincount(pairs_K // n_vocab, minlength=n_vocab).astype(np.float64)
  prev_T, next_T = held[:-1], held[1:]
  key_T = prev_T * n_vocab + next_T
  at_T = np.minimum(np.searchsorted(pairs_K, key_T), pairs_K.size - 1)
  pair_T = np.where(pairs_K[at_T] == key_T, pair_counts_K[at_T], 0)
  c_T, t_T = context_counts_V[prev_T], followers_V[prev_T]
  # An unseen context (c = T = 0) falls back to the unigram.
  p_T = np.where(c_T > 0, (pair_T + t_T * p1_V[next_T]) / np.maximum(c_T + t_T, 1.0),
                 p1_V[next_T])
  return float(-np.log(p_T).mean())

"""The bigram reference loss: a hand count, and a Markov chain whose conditional entropy is known."""
import numpy as np
import pytest

from scaling.data import ngram


def test_witten_bell_by_hand():
  # Training text a b a b a c (V = 3): contexts a→{b, b, c}, b→{a, a}; held-out a b, b c.
  train = np.array([0, 1, 0, 1, 0, 2])
  held = np.array([0, 1, 2])
  p1 = (np.array([3, 2, 1]) + 1.0) / (6 + 3)           # add-one unigram
  p_ab = (2 + 2 * p1[1]) / (3 + 2)                      # c(a,b)=2, c(a)=3, T(a)=2
  p_bc = (0 + 1 * p1[2]) / (2 + 1)                      # c(b,c)=0, c(b)=2, T(b)=1
  want = -(np.log(p_ab) + np.log(p_bc)) / 2
  assert ngram.bigram_loss([train], [held], 3) == pytest.approx(want, rel=1e-12)


def test_unseen_context_falls_back_to_the_unigram():
  train = np.array([0, 1, 0, 1])                        # token 2 never appears as a context
  p1 = (np.array([2, 2, 0]) + 1.0) / (4 + 3)
  assert ngram.bigram_loss([train], [np.array([2, 0])], 3) == pytest.approx(-np.log(p1[0]))


def test_markov_chain_conditional_entropy():
  """Long text from a known transition matrix: the loss tends to H(next | previous)."""
  rng = np.random.default_rng(0)
  V = 6
  P_VV = rng.dirichlet(np.full(V, 0.5), size=V)
  def sample(n):
    x = np.empty(n, np.int64)
    x[0] = 0
    u = rng.random(n)
    cum = np.cumsum(P_VV, 1)
    for t in range(1, n):
      x[t] = min(np.searchsorted(cum[x[t - 1]], u[t]), V - 1)
    return x
  train, held = sample(200_000), sample(50_000)
  w, v = np.linalg.eig(P_VV.T)
  pi = np.real(v[:, np.argmin(abs(w - 1))])
  pi /= pi.sum()
  h_cond = -(pi[:, None] * P_VV * np.log(P_VV)).sum()
  # Split into shards: the pairs across a shard boundary are counted like any other.
  got = ngram.bigram_loss([train[:70_000], train[70_000:]], [held], V)
  assert got == pytest.approx(h_cond, abs=0.01)
  assert got < ngram.bigram_loss([train], [held[rng.permutation(held.size)]], V) - 0.1


def test_no_held_out_text_gives_none():
  assert ngram.bigram_loss([np.array([0, 1, 0])], [np.zeros(0, np.int64)], 2) is None

"""The generated default corpus (`data.source = "synthetic"`): token sequences from a seeded
source whose entropy rate, the lowest loss any model can reach, is known exactly.

A document is `doc_tokens` tokens (the model's context, so a training window is one document):
    BOS, topic, phrase, phrase, …, phrase, PAD …
  - the topic z (one of `n_topics`, uniform) is the document's latent state, written once at its
    start: it changes which phrases are likely for the whole document (attention must reach back);
  - a phrase is one of `n_patterns` patterns ("quanta"), drawn from p_z(k) = (1 − β)·g(k) + β·t_z(k):
    g is Zipfian over all patterns, g(k) ∝ k^−s, and t_z Zipfian over the topic's own
    `topic_patterns` patterns (Michaud et al. 2023, arXiv 2303.13506, §2: quanta used with Zipf
    frequencies);
  - pattern k is M tokens: two head tokens (a pair unique to k, so the head names the pattern),
    M − 3 body tokens fixed for k (what a model memorises, pattern by pattern, most frequent
    first), and a slot: one of `slot_values` values of k, drawn uniformly the first time k occurs
    in the document and copied from that occurrence every later time (an induction: the model
    must find the earlier occurrence);
  - PAD fills what is left after the last whole phrase.
Symbols are the tokens (no BPE): ids 0 = BOS, 1 = PAD, 2 … V − 1 the symbols.

Every token's probability is a function of the tokens before it (the head pair names the
pattern, positions are fixed, the slots already drawn are in the document), so the source's
entropy per document is exact (Cover & Thomas, the chain rule):
    H_doc = ln Z + (1/Z)·Σ_z [ J·H(p_z) + ln S · Σ_k (1 − (1 − p_z(k))^J) ]
(J phrases; the last sum is the expected number of distinct patterns in a document, each of which
draws its slot once) and the entropy rate is H_doc / L nats per token: every one of a window's L
targets (the next document's BOS included, at a fixed position) is counted.

What the design predicts (Michaud 2023 §3; Hutter 2021, arXiv 2102.04074): a model that has
learned the n most frequent patterns is left with the loss of the others, Σ_{k>n} g(k) ∝ n^−(s−1),
so L(N) − H ∝ N^−(s−1) where each pattern costs a fixed number of parameters, and
L(D) − H ∝ D^−(s−1)/s where a pattern is learned after a fixed number of sightings.

Legend: K patterns, M tokens of a pattern, Z topics, T patterns of a topic, B documents of a
chunk, J phrases of a document, L tokens of a document.

Determinism: every random number comes from numpy's PCG64 raw 64-bit stream seeded by a
SeedSequence of (seed, purpose, chunk), turned into floats and integers here, so the same seed
and length give the same tokens on every machine, in chunks of CHUNK_DOCS documents (bounded
memory, any length).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from scaling.errors import UserError

BOS, PAD, FIRST_SYMBOL = 0, 1, 2
CHUNK_DOCS = 512
_TABLE, _TRAIN, _EVAL = 0, 1, 2   # SeedSequence purposes


@dataclasses.dataclass(frozen=True)
class SourceParams:
  """The generator's parameters (data.synthetic in the config, and the store's meta.json)."""
  seed: int = 0
  vocab: int = 512            # V: token ids, BOS and PAD included
  doc_tokens: int = 128       # L: a document, the model's context
  n_patterns: int = 20_000    # K
  zipf_exponent: float = 1.5  # s: g(k) ∝ k^−s
  pattern_tokens: int = 6     # M: 2 head + M − 3 body + 1 slot
  slot_values: int = 4        # S
  n_topics: int = 32          # Z
  topic_patterns: int = 64    # T
  topic_weight: float = 0.5   # β

  @property
  def n_phrases(self) -> int:
    """J: whole phrases after BOS and the topic."""
    return (self.doc_tokens - 2) // self.pattern_tokens

  def check(self) -> None:
    """A one-line error for parameters that cannot make the source."""
    n_sym = self.vocab - FIRST_SYMBOL
    rules = [
        (self.vocab >= 8, "vocab must be at least 8"),
        (self.n_topics >= 1 and self.n_topics <= n_sym, f"n_topics must be in 1..{n_sym}"),
        (self.pattern_tokens >= 3, "pattern_tokens must be at least 3 (2 head tokens, 1 slot)"),
        (self.n_phrases >= 1, f"doc_tokens={self.doc_tokens} holds no phrase of "
                              f"{self.pattern_tokens} tokens after BOS and the topic"),
        (1 <= self.n_patterns <= n_sym * n_sym // 2,
         f"n_patterns must be in 1..{n_sym * n_sym // 2} (head pairs of {n_sym} symbols)"),
        (self.zipf_exponent > 1.0, "zipf_exponent must be above 1"),
        (1 <= self.slot_values <= n_sym, f"slot_values must be in 1..{n_sym}"),
        (1 <= self.topic_patterns <= self.n_patterns, "topic_patterns must be in 1..n_patterns"),
        (0.0 <= self.topic_weight <= 1.0, "topic_weight must be in [0, 1]"),
        (self.seed >= 0, "seed must be non-negative")]
    for ok, what in rules:
      if not ok:
        raise UserError(f"data.synthetic: {what}")


# ---------------------------------------------------------------------------------------------
# Random numbers: PCG64's raw stream, converted here (numpy's own conversions may change between
# releases; the raw generator does not).


def _stream(seed: int, *purpose: int) -> np.random.PCG64:
  return np.random.PCG64(np.random.SeedSequence([seed, *purpose]))


def _uniform(bits: np.random.PCG64, shape) -> np.ndarray:
  """Floats in [0, 1) from the top 53 bits of each raw draw."""
  n = int(np.prod(shape))
  raw = bits.random_raw(n).astype(np.uint64)
  return ((raw >> np.uint64(11)).astype(np.float64) * 2.0 ** -53).reshape(shape)


def _integers(bits: np.random.PCG64, high: int, shape) -> np.ndarray:
  """Integers in [0, high), floor(u·high) (bias below high·2^−53)."""
  return np.minimum((_uniform(bits, shape) * high).astype(np.int64), high - 1)


def _zipf(n: int, s: float) -> np.ndarray:
  """Probabilities ∝ k^−s, k = 1 … n."""
  w = np.exp(-s * np.log(np.arange(1, n + 1, dtype=np.float64)))
  return w / w.sum()


# ---------------------------------------------------------------------------------------------
# The source: its tables, its exact entropy, its samples.


@dataclasses.dataclass(frozen=True)
class Source:
  params: SourceParams
  patterns_KM: np.ndarray       # head, head, body …, and −1 for the slot
  slots_KS: np.ndarray          # each pattern's slot values
  topic_patterns_ZT: np.ndarray  # each topic's own patterns, most favoured first
  global_p_K: np.ndarray        # g
  topic_p_T: np.ndarray         # t_z over a topic's own patterns (the same Zipf for every topic)

  def phrase_p_ZK(self) -> np.ndarray:
    """p_z(k) = (1 − β)·g(k) + β·t_z(k) for every topic."""
    beta = self.params.topic_weight
    p_ZK = np.tile((1.0 - beta) * self.global_p_K, (self.params.n_topics, 1))
    rows = np.repeat(np.arange(self.params.n_topics), self.params.topic_patterns)
    np.add.at(p_ZK, (rows, self.topic_patterns_ZT.ravel()),
              beta * np.tile(self.topic_p_T, self.params.n_topics))
    return p_ZK


def make_source(params: SourceParams) -> Source:
  """The pattern tables of a seed (unique head pairs; bodies and slot values uniform symbols)."""
  params.check()
  p = params
  n_sym = p.vocab - FIRST_SYMBOL
  bits = _stream(p.seed, _TABLE)
  heads: list[int] = []
  seen: set[int] = set()
  while len(heads) < p.n_patterns:   # unique pairs, in the order drawn
    for code in _integers(bits, n_sym * n_sym, (2 * p.n_patterns,)).tolist():
      if code not in seen:
        seen.add(code)
        heads.append(code)
  heads_K = np.array(heads[:p.n_patterns], np.int64)
  patterns_KM = np.empty((p.n_patterns, p.pattern_tokens), np.int64)
  patterns_KM[:, 0] = FIRST_SYMBOL + heads_K // n_sym
  patterns_KM[:, 1] = FIRST_SYMBOL + heads_K % n_sym
  patterns_KM[:, 2:-1] = FIRST_SYMBOL + _integers(bits, n_sym, (p.n_patterns, p.pattern_tokens - 3))
  patterns_KM[:, -1] = -1
  slots_KS = FIRST_SYMBOL + _distinct_rows(bits, p.n_patterns, p.slot_values, n_sym)
  topic_ZT = np.argsort(_uniform(bits, (p.n_topics, p.n_patterns)), axis=1, kind="stable")
  return Source(p, patterns_KM, slots_KS, topic_ZT[:, :p.topic_patterns].copy(),
                _zipf(p.n_patterns, p.zipf_exponent), _zipf(p.topic_patterns, p.zipf_exponent))


def _distinct_rows(bits: np.random.PCG64, n_rows: int, width: int, high: int) -> np.ndarray:
  """(n_rows, width) integers in [0, high), distinct within each row, uniform: the first
  distinct values of each row's draws (3·width a row, more for a row that needs them)."""
  out = np.empty((n_rows, width), np.int64)
  for i, row in enumerate(_integers(bits, high, (n_rows, 3 * width)).tolist()):
    values = list(dict.fromkeys(row))
    while len(values) < width:
      values = list(dict.fromkeys(values + _integers(bits, high, (width,)).tolist()))
    out[i] = values[:width]
  return out


def entropy_rate(source: Source) -> dict:
  """The exact entropy of a document and per token (nats), and its parts."""
  p = source.params
  p_ZK = source.phrase_p_ZK()
  logs = np.log(np.where(p_ZK > 0, p_ZK, 1.0))
  h_phrase_Z = -(p_ZK * logs).sum(axis=1)
  distinct_Z = (-np.expm1(p.n_phrases * np.log1p(-np.minimum(p_ZK, 1.0 - 1e-16)))).sum(axis=1)
  h_topic = math.log(p.n_topics)
  h_heads = p.n_phrases * float(h_phrase_Z.mean())
  h_slots = math.log(p.slot_values) * float(distinct_Z.mean())
  h_doc = h_topic + h_heads + h_slots
  return {"entropy_rate_nats": h_doc / p.doc_tokens, "doc_entropy_nats": h_doc,
          "topic_nats": h_topic, "pattern_nats": h_heads, "slot_nats": h_slots,
          "distinct_patterns_per_doc": float(distinct_Z.mean())}


def _chunk(source: Source, p_ZK: np.ndarray, cdf_global: np.ndarray, cdf_topic: np.ndarray,
           purpose: int, index: int, n_docs: int) -> tuple[np.ndarray, np.ndarray]:
  """Documents of chunk `index` of a split ((n_docs, L) tokens) and each one's −ln p (nats)."""
  p = source.params
  bits = _stream(p.seed, purpose, index)
  J, M = p.n_phrases, p.pattern_tokens
  # Draws for a whole chunk, whatever n_docs: a shorter last chunk is a prefix of the full one.
  topic_B = _integers(bits, p.n_topics, (CHUNK_DOCS,))
  u_BJ2 = _uniform(bits, (CHUNK_DOCS, J, 2))
  slot_BJ = _integers(bits, p.slot_values, (CHUNK_DOCS, J))
  topic_B, u_BJ2, slot_BJ = topic_B[:n_docs], u_BJ2[:n_docs], slot_BJ[:n_docs]
  from_topic_BJ = u_BJ2[..., 0] < p.topic_weight
  k_global = np.searchsorted(cdf_global, u_BJ2[..., 1], side="right")
  k_topic = source.topic_patterns_ZT[topic_B[:, None],
                                     np.searchsorted(cdf_topic, u_BJ2[..., 1], side="right")]
  k_BJ = np.minimum(np.where(from_topic_BJ, k_topic, k_global), p.n_patterns - 1)
  first_BJ, slot_BJ = _first_and_copied(k_BJ, slot_BJ)
  tokens_BL = np.full((n_docs, p.doc_tokens), PAD, np.int64)
  tokens_BL[:, 0] = BOS
  tokens_BL[:, 1] = FIRST_SYMBOL + topic_B
  phrases_BJM = source.patterns_KM[k_BJ].copy()
  phrases_BJM[..., -1] = source.slots_KS[k_BJ, slot_BJ]
  tokens_BL[:, 2:2 + J * M] = phrases_BJM.reshape(n_docs, J * M)
  nll_B = (math.log(p.n_topics) - np.log(p_ZK[topic_B[:, None], k_BJ]).sum(axis=1)
           + math.log(p.slot_values) * first_BJ.sum(axis=1))
  return tokens_BL, nll_B


def _by_pattern(k_BJ: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The phrases ordered by (document, pattern, position), and where each (document, pattern)
  group starts in that order."""
  n_docs, J = k_BJ.shape
  doc = np.repeat(np.arange(n_docs), J)
  order = np.lexsort((np.tile(np.arange(J), n_docs), k_BJ.ravel(), doc))
  doc, k = doc[order], k_BJ.ravel()[order]
  starts = np.ones(order.size, bool)
  starts[1:] = (doc[1:] != doc[:-1]) | (k[1:] != k[:-1])
  return order, starts


def _first_and_copied(k_BJ: np.ndarray, slot_BJ: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Where a phrase is the first of its pattern in its document, and each phrase's slot value:
  the one drawn at that first occurrence."""
  order, starts = _by_pattern(k_BJ)
  first = np.zeros(order.size, bool)
  first[order] = starts
  group_first = np.maximum.accumulate(np.where(starts, np.arange(order.size), 0))
  copied = np.empty(order.size, slot_BJ.dtype)
  copied[order] = slot_BJ.ravel()[order][group_first]
  return first.reshape(k_BJ.shape), copied.reshape(k_BJ.shape)


class Generator:
  """Documents of one split, chunk by chunk: `documents(n)` yields (tokens_BL, nll_B) arrays of
  at most CHUNK_DOCS documents until n documents, in bounded memory."""

  def __init__(self, source: Source, split: str):
    if split not in ("train", "eval"):
      raise ValueError(split)
    self.source, self.purpose = source, (_TRAIN if split == "train" else _EVAL)
    self.p_ZK = source.phrase_p_ZK()
    self.cdf_global = np.cumsum(source.global_p_K)
    self.cdf_topic = np.cumsum(source.topic_p_T)

  def documents(self, n_docs: int, first_chunk: int = 0):
    done = first_chunk * CHUNK_DOCS
    for index in range(first_chunk, math.ceil(n_docs / CHUNK_DOCS)):
      take = min(CHUNK_DOCS, n_docs - done)
      yield _chunk(self.source, self.p_ZK, self.cdf_global, self.cdf_topic, self.purpose, index,
                   take)
      done += take


def monte_carlo_entropy(source: Source, n_docs: int) -> tuple[float, float]:
  """Mean −ln p per token of n_docs held-out documents under the generator, and its standard
  error: the check of entropy_rate by sampling."""
  nll = np.concatenate([nll for _, nll in Generator(source, "eval").documents(n_docs)])
  per_token = nll / source.params.doc_tokens
  return float(per_token.mean()), float(per_token.std(ddof=1) / math.sqrt(per_token.size))

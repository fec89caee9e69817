"""The generated corpus: its exact entropy rate against sampling and against enumeration, the same
bytes in every process, a store that says what it is, and no model below the floor."""

import dataclasses
import hashlib  # noqa: F401  (the _DIGEST code below runs in this module too)
import itertools
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from scaling.config.spec import validate
from scaling.data import generated
from scaling.errors import UserError


_DIGEST = """
import hashlib
from scaling.data import generated

def digest(params, n_docs):
  source = generated.make_source(params)
  h = hashlib.sha256()
  for tokens_BL, _ in generated.Generator(source, "train").documents(n_docs):
    h.update(tokens_BL.astype("<u2").tobytes())
  return h.hexdigest()
"""
_namespace: dict = {}
exec(_DIGEST, _namespace)
_digest = _namespace["digest"]


def test_exact_entropy_rate_against_monte_carlo():
  """The closed form against the mean −ln p of 60,000 sampled documents (three standard errors)."""
  source = generated.make_source(generated.SourceParams())
  exact = generated.entropy_rate(source)["entropy_rate_nats"]
  mean, se = generated.monte_carlo_entropy(source, 60_000)
  assert se < 0.002 * exact
  assert abs(mean - exact) < 3 * se


def test_entropy_formula_against_enumeration():
  """A source small enough to list every document: the entropy −Σ p ln p over all of them (p
  the product of the generator's own draws) against the closed form."""
  params = generated.SourceParams(vocab=12, doc_tokens=2 + 3 * 3, n_patterns=4, pattern_tokens=3,
                                  slot_values=2, n_topics=2, topic_patterns=2, topic_weight=0.4,
                                  zipf_exponent=1.7)
  source = generated.make_source(params)
  p_ZK = source.phrase_p_ZK()
  J, S, Z = params.n_phrases, params.slot_values, params.n_topics
  total = 0.0
  for z in range(Z):
    for ks in itertools.product(range(params.n_patterns), repeat=J):
      p_patterns = np.prod([p_ZK[z, k] for k in ks])
      n_first = len(set(ks))                   # each distinct pattern draws its slot once
      for _ in range(S ** n_first):            # every slot assignment is equally likely
        p = p_patterns / Z / S ** n_first
        total -= p * math.log(p)
  exact = generated.entropy_rate(source)
  assert exact["doc_entropy_nats"] == pytest.approx(total, rel=1e-12)
  assert exact["entropy_rate_nats"] == pytest.approx(total / params.doc_tokens, rel=1e-12)


def test_documents_follow_their_rules():
  """Layout, unique heads, bodies fixed per pattern, slots copied within a document."""
  params = generated.SourceParams(vocab=64, doc_tokens=32, n_patterns=50, slot_values=4,
                                  topic_patterns=8)
  source = generated.make_source(params)
  heads = {tuple(r[:2]) for r in source.patterns_KM.tolist()}
  assert len(heads) == params.n_patterns
  tokens_BL, nll_B = next(generated.Generator(source, "eval").documents(200))
  assert tokens_BL.shape == (200, 32) and (tokens_BL[:, 0] == generated.BOS).all()
  J, M = params.n_phrases, params.pattern_tokens
  assert (tokens_BL[:, 2 + J * M:] == generated.PAD).all()
  by_head = {tuple(r[:2]): k for k, r in enumerate(source.patterns_KM.tolist())}
  for doc in tokens_BL:
    slot_of = {}
    for j in range(J):
      phrase = doc[2 + j * M:2 + (j + 1) * M]
      k = by_head[tuple(phrase[:2])]
      assert (phrase[2:-1] == source.patterns_KM[k, 2:-1]).all()
      assert phrase[-1] in source.slots_KS[k]
      assert slot_of.setdefault(k, phrase[-1]) == phrase[-1]
  assert (nll_B > 0).all()


def test_two_processes_generate_identical_bytes():
  params = generated.SourceParams(vocab=300, doc_tokens=64, n_patterns=2000)
  here = _digest(params, 1500)
  code = (_DIGEST + "\nimport sys, json\nprint(digest(generated.SourceParams("
          "**json.loads(sys.argv[2])), 1500))")
  out = subprocess.run([sys.executable, "-c", code, str(REPO), json.dumps(
      dataclasses.asdict(params))], capture_output=True, text=True, check=True, cwd=REPO)
  assert out.stdout.strip() == here
  assert _digest(dataclasses.replace(params, seed=1), 1500) != here


def test_same_bytes_as_recorded():
  """The first chunk of seed 0, as every machine must generate it (numpy's PCG64 raw stream and
  SeedSequence are fixed by their specifications; the conversions are this module's)."""
  params = generated.SourceParams(vocab=300, doc_tokens=64, n_patterns=2000)
  assert _digest(params, 100) == GOLDEN_100


GOLDEN_100 = "87d59c7bd2dff753634da2a93985b7e8ad38b769eb09b5a843a029f07db18b6f"


def test_a_shorter_split_is_a_prefix():
  source = generated.make_source(generated.SourceParams(vocab=100, doc_tokens=40, n_patterns=300))
  long = np.concatenate([t for t, _ in generated.Generator(source, "train").documents(700)])
  short = np.concatenate([t for t, _ in generated.Generator(source, "train").documents(600)])
  assert (long[:600] == short).all()
  resumed = np.concatenate([t for t, _ in generated.Generator(source, "train").documents(700, 1)])
  assert (long[generated.CHUNK_DOCS:] == resumed).all()


@pytest.mark.parametrize("field, value, message", [
    ("doc_tokens", 7, "holds no phrase"), ("zipf_exponent", 1.0, "above 1"),
    ("n_patterns", 10**9, "n_patterns"), ("topic_weight", 1.5, "topic_weight"),
    ("slot_values", 0, "slot_values")])
def test_bad_parameters_are_one_line_errors(field, value, message):
  with pytest.raises(UserError, match=message):
    generated.SourceParams(**{field: value}).check()


_NEAR_FLOOR = {"model.n_layer": 2, "model.d_model": 32, "model.n_ctx": 32, "data.vocab_size": 40,
               "data.synthetic.n_patterns": 24, "data.synthetic.pattern_tokens": 4,
               "data.synthetic.slot_values": 4, "data.synthetic.n_topics": 4,
               "data.synthetic.topic_patterns": 6, "train.steps": 300, "train.batch_size": 16,
               "train.peak_lr": 0.01, "eval.every": 100, "eval.batches": 8,
               "eval.batch_size": 16, "mesh.num_devices": 1, "checkpoint.every": 300}


def test_a_trained_model_ends_near_but_not_below_the_floor(small_cfg):
  """A small source a 2-layer model nearly learns in 300 steps: every held-out loss it logs lies
  above the exact entropy rate less three standard errors of the evaluated documents' own −ln p,
  and far below the bigram loss (the model uses the topic and copies slots)."""
  from conftest import read_metrics
  from scaling.data import store as storelib
  from scaling.train import loop as trainlib
  cfg = small_cfg(**_NEAR_FLOOR)
  summary = trainlib.train(validate(cfg), verbose=False)
  store = storelib.open_store(summary.store)
  source = generated.make_source(generated.SourceParams(**store.meta["synthetic"]))
  h = generated.entropy_rate(source)["entropy_rate_nats"]
  assert summary.entropy_rate == pytest.approx(h, rel=1e-12)
  n_windows = cfg.eval.batches * cfg.eval.batch_size       # the evaluated documents
  nll = np.concatenate([x for _, x in generated.Generator(source, "eval").documents(n_windows)])
  se = float(np.std(nll / cfg.model.n_ctx, ddof=1) / np.sqrt(n_windows))
  losses = [m["eval_loss"] for m in read_metrics(cfg.run_dir) if m.get("eval_loss") is not None]
  assert min(losses) > h - 3 * se
  assert summary.final_eval_loss < h + 0.5 * (summary.bigram_loss - h)

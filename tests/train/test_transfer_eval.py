"""Extra evaluation sets: the run's tokenizer, the same fixed batches, exact after a resume."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import read_metrics, words_corpus
from scaling.config.spec import data_spec
from scaling.data import loader as datalib
from scaling.data import sources
from scaling.data.tokenize import build_store
from scaling.errors import UserError
from scaling.train import loop as trainlib
from scaling.config.spec import validate

EXTRA = "python-docs=builtin:python-docs"


def test_extra_set_uses_the_runs_tokenizer(tmp_path):
  store = build_store(data_spec(source=words_corpus(tmp_path), vocab_size=300), verbose=False)
  tokens = datalib.extra_eval_tokens(store.tokenizer, "builtin:python-docs", "text", True)
  docs = [d.strip().lower() for d in sources.python_docs() if d.strip()]
  eos = store.tokenizer.token_to_id(datalib.EOS)
  first = [eos] + store.tokenizer.encode(docs[0]).ids
  np.testing.assert_array_equal(tokens[:len(first)], first)
  assert (tokens == eos).sum() == len(docs)
  assert tokens.max() < store.n_vocab


def test_parse_eval_sources():
  assert datalib.parse_eval_sources("a=x.txt, b=builtin:python-docs") == [
      ("a", "x.txt"), ("b", "builtin:python-docs")]
  with pytest.raises(UserError, match="name=source"):
    datalib.parse_eval_sources("x.txt")
  with pytest.raises(UserError, match="distinct"):
    datalib.parse_eval_sources("a=x,a=y")


def test_extra_eval_fixed_and_resumed(small_cfg, tmp_path):
  cfg = small_cfg(**{"eval.extra_sources": EXTRA, "mesh.num_devices": 1, "train.steps": 20,
                     "checkpoint.every": 10, "data.source": words_corpus(tmp_path, 400)})
  summary = trainlib.train(validate(cfg), verbose=False)
  ref = {m["step"]: m for m in read_metrics(cfg.run_dir) if m["eval_loss"] is not None}
  assert set(ref) == {10, 20}
  assert ref[20]["eval_loss/python-docs"] != ref[20]["eval_loss"]
  # Leave the run as a kill right after the step-10 checkpoint would, then resume it.
  killed = Path(cfg.run_dir)
  shutil.rmtree(killed / "checkpoints" / "20")
  (killed / "summary.json").unlink()
  trainlib.train(validate(cfg), verbose=False)
  again = {m["step"]: m for m in read_metrics(killed) if m["eval_loss"] is not None}
  for step in (10, 20):
    assert again[step]["eval_loss/python-docs"] == pytest.approx(
        ref[step]["eval_loss/python-docs"], rel=1e-5)
  assert json.loads((killed / "summary.json").read_text())["final_eval_losses"]["python-docs"] == \
      pytest.approx(summary.final_eval_losses["python-docs"], rel=1e-5)


def test_extra_sets_refused_on_the_generated_corpus(small_cfg):
  with pytest.raises(UserError, match="extra_sources are text"):
    trainlib.train(validate(small_cfg(**{"eval.extra_sources": EXTRA})), verbose=False)

"""The token store as a stage: `scaling tokenize` writes it alone, a run reads it by path and
records which store and tokenizer it trained on."""

import json

import numpy as np
import pytest

from conftest import REPO, read_metrics
from scaling import store as storelib
from scaling import train as trainlib
from scaling.cli import main as cli_main
from scaling.errors import UserError


def test_tokenize_writes_a_store_a_run_trains_on(tmp_path, capsys, small_cfg):
  out = tmp_path / "store"
  assert cli_main(["tokenize", "--config", str(REPO / "configs/test_small.py"),
                   "--out", str(out)]) == 0
  printed = capsys.readouterr().out
  assert f"token store: {out}" in printed
  assert {p.name for p in out.iterdir()} == {"train.bin", "eval.bin", "meta.json",
                                             "tokenizer.json"}
  meta = json.loads((out / "meta.json").read_text())
  opened = storelib.open_store(out)
  assert opened.train_T.size == meta["n_tokens_train"] and opened.n_vocab == meta["n_vocab"]
  # The stored tokens decode to the corpus's training text (EOS before each document).
  eos = opened.tokenizer.token_to_id("<|endoftext|>")
  assert opened.train_T[0] == eos and (np.asarray(opened.train_T) == eos).sum() == \
      meta["n_docs_train"]

  # The same run on the store and straight from the corpus sees the same tokens: same losses.
  by_store = small_cfg(**{"data.store": str(out), "train.steps": 4, "mesh.num_devices": 1})
  by_store.run_dir = str(tmp_path / "a")
  summary = trainlib.train(by_store, verbose=False)
  assert summary["store"] == str(out) and summary["store_sha256_16"] == meta["store_sha256_16"]
  assert summary["tokenizer_sha256_16"] == meta["tokenizer_sha256_16"]
  direct = small_cfg(**{"train.steps": 4, "mesh.num_devices": 1})
  direct.run_dir = str(tmp_path / "b")
  summary_b = trainlib.train(direct, verbose=False)
  assert summary_b["store_sha256_16"] == meta["store_sha256_16"]   # the same corpus and tokenizer
  assert [m["loss"] for m in read_metrics(tmp_path / "a")] == \
      [m["loss"] for m in read_metrics(tmp_path / "b")]


def test_a_store_folder_is_checked(tmp_path):
  with pytest.raises(UserError, match="not a token store"):
    storelib.open_store(tmp_path)
  (tmp_path / "meta.json").write_text("{broken")
  with pytest.raises(UserError, match="meta.json cannot be read"):
    storelib.open_store(tmp_path)

"""The token store as a stage: `scaling tokenize` writes it alone, a run reads it by path and
records which store and tokenizer it trained on."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, read_metrics
from scaling.cli import main as cli_main
from scaling.data import store as storelib
from scaling.errors import UserError
from scaling.train import loop as trainlib
from scaling.config.spec import validate


def test_tokenize_writes_a_store_a_run_trains_on(tmp_path, capsys, small_cfg):
  out = tmp_path / "store"
  assert cli_main(["tokenize", "--config", str(REPO / "configs/test_small.py"),
                   "--out", str(out), "--config.data.shard_tokens=100000"]) == 0
  printed = capsys.readouterr().out
  assert f"token store: {out}" in printed
  meta = json.loads((out / "meta.json").read_text())
  n_train, n_eval = meta["n_tokens_train"], meta["n_tokens_eval"]
  assert [s["n_tokens"] for s in meta["shards"]["train"]] == \
      [100000] * (n_train // 100000) + [n_train % 100000] * (n_train % 100000 > 0)  # the last shorter
  assert {p.name for p in out.iterdir()} == {"meta.json", "tokenizer.json"} | {
      f"{split}-{k:05d}.bin" for split in ("train", "eval") for k in range(len(meta["shards"][split]))}
  opened = storelib.open_store(out)
  assert opened.train_T.size == n_train and opened.eval_T.size == n_eval
  assert opened.n_vocab == meta["n_vocab"]
  # The stored tokens decode to the corpus's training text (EOS before each document).
  eos = opened.tokenizer.token_to_id("<|endoftext|>")
  assert opened.train_T[0] == eos and (np.asarray(opened.train_T) == eos).sum() == \
      meta["n_docs_train"]

  # The same run on the store and straight from the corpus sees the same tokens: same losses.
  by_store = small_cfg(**{"data.store": str(out), "train.steps": 4, "mesh.num_devices": 1})
  by_store.run_dir = str(tmp_path / "a")
  summary = trainlib.train(validate(by_store), verbose=False)
  assert summary.store == str(out) and summary.store_sha256_16 == meta["store_sha256_16"]
  assert summary.tokenizer_sha256_16 == meta["tokenizer_sha256_16"]
  direct = small_cfg(**{"train.steps": 4, "mesh.num_devices": 1})
  direct.run_dir = str(tmp_path / "b")
  summary_b = trainlib.train(validate(direct), verbose=False)
  assert summary_b.store_sha256_16 == meta["store_sha256_16"]   # the same corpus and tokenizer
  assert [m["loss"] for m in read_metrics(tmp_path / "a")] == \
      [m["loss"] for m in read_metrics(tmp_path / "b")]


def test_a_store_folder_is_checked(tmp_path):
  with pytest.raises(UserError, match="not a token store"):
    storelib.open_store(tmp_path)
  (tmp_path / "meta.json").write_text("{broken")
  with pytest.raises(UserError, match="meta.json cannot be read"):
    storelib.open_store(tmp_path)


def test_sharded_tokens_index_like_one_array():
  """Windows straddling shards, slices and scalars read as from the concatenated array."""
  rng = np.random.default_rng(0)
  parts = [rng.integers(0, 60000, n).astype(np.uint16) for n in (7, 1, 13, 5)]
  flat, sharded = np.concatenate(parts), storelib.ShardedTokens(parts)
  idx = rng.integers(0, flat.size, (4, 9))
  assert sharded.size == flat.size == 26
  assert np.array_equal(sharded[idx], flat[idx])
  assert np.array_equal(sharded[3:22], flat[3:22]) and np.array_equal(sharded[::5], flat[::5])
  assert sharded[8] == flat[8] and np.array_equal(np.asarray(sharded), flat)
  with pytest.raises(IndexError):
    sharded[np.array([26])]


@pytest.mark.parametrize("corpus", [
    "--config.data.synthetic.train_tokens=3000000",     # the generated corpus
    "--config.data.source=builtin:python-docs --config.data.shard_tokens=2048"])  # text, BPE
def test_tokenize_killed_midway_reruns_to_identical_shards(tmp_path, witness, monkeypatch, corpus):
  """`scaling tokenize` SIGKILLed while writing shards: the rerun keeps the finished shards,
  redoes the rest, and every file equals an uninterrupted build's, byte for byte."""
  env = dict(os.environ, SCALING_CACHE=str(witness / "cache"))
  args = [sys.executable, "-m", "scaling.cli", "tokenize", "--config",
          str(REPO / "configs/test_small.py"), "--config.data.shard_tokens=8192", *corpus.split()]
  whole, killed = tmp_path / "whole", tmp_path / "killed"
  proc = subprocess.Popen(args + ["--out", str(killed)], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
  progress, seen = killed / "progress.json", 0
  deadline = time.monotonic() + 120
  while proc.poll() is None and time.monotonic() < deadline and seen < 40:
    try:
      seen = len(json.loads(progress.read_text())["shards"]["train"])
    except (OSError, ValueError, KeyError):
      pass
    time.sleep(0.005)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert seen >= 40 and not (killed / "meta.json").exists(), proc.stderr.read()[-2000:]
  recorded = json.loads(progress.read_text())["shards"]["train"]
  kept = {s["file"]: (killed / s["file"]).stat().st_mtime_ns for s in recorded}
  with pytest.raises(UserError, match="being written or was stopped"):
    storelib.open_store(killed)
  rerun = subprocess.run(args + ["--out", str(killed)], env=env, capture_output=True, text=True)
  assert rerun.returncode == 0 and "resuming" in rerun.stdout, rerun.stderr[-2000:]
  monkeypatch.setenv("SCALING_CACHE", str(witness / "cache"))     # the same tokenizer cache
  assert cli_main(args[3:] + ["--out", str(whole)]) == 0          # uninterrupted, in-process
  names = sorted(p.name for p in whole.iterdir())
  assert names == sorted(p.name for p in killed.iterdir()) and len(names) > 100
  for name in names:
    assert (whole / name).read_bytes() == (killed / name).read_bytes(), name
  # The shards recorded as finished before the kill were kept, not written again (one renamed
  # just before the kill, before progress.json named it, is written again).
  assert all((killed / n).stat().st_mtime_ns == t for n, t in kept.items())


def test_a_store_written_before_shards_is_read(tmp_path):
  """The older layout (train.bin, eval.bin; no shard index) opens as one shard per split."""
  from scaling.config.spec import data_spec
  from scaling.data.tokenize import build_store
  store = build_store(data_spec(source=str(REPO / "docs" / "guide.md"), vocab_size=300,
                                cache_dir=str(tmp_path / "c")), out=str(tmp_path / "s"),
                      verbose=False)
  meta = json.loads((tmp_path / "s" / "meta.json").read_text())
  for split in ("train", "eval"):
    assert len(meta["shards"][split]) == 1
    (tmp_path / "s" / f"{split}-00000.bin").rename(tmp_path / "s" / f"{split}.bin")
  for key in ("shards", "unigram_entropy_train", "bigram_loss_eval", "content_sha256_16",
              "shard_tokens"):
    meta.pop(key)
  (tmp_path / "s" / "meta.json").write_text(json.dumps(meta))
  old = storelib.open_store(tmp_path / "s")
  assert np.array_equal(np.asarray(old.train_T), np.asarray(store.train_T))
  assert np.array_equal(np.asarray(old.eval_T), np.asarray(store.eval_T))
  assert old.unigram_entropy() == pytest.approx(store.unigram_entropy(), rel=1e-12)
  assert old.bigram_loss() == pytest.approx(store.bigram_loss(), rel=1e-12)

"""Corpus sources, bad corpora, the split, the tokenizer cache and deterministic batches."""

import json

import numpy as np
import pytest

from conftest import shared_corpus, words_corpus
from scaling.config.spec import data_spec
from scaling.data import loader as datalib
from scaling.data import sources as data
from scaling.data.tokenize import build_store
from scaling.errors import UserError


def test_a_folder_of_jsonl_shards_is_read_in_order(tmp_path):
  import lzma
  folder = tmp_path / "shards"
  folder.mkdir()
  with lzma.open(folder / "part-0.jsonl.xz", "wt") as f:
    f.write(json.dumps({"text": "one"}) + "\n" + json.dumps({"text": "two"}) + "\n")
  (folder / "part-1.jsonl").write_text(json.dumps({"text": "three"}) + "\n")
  (folder / "readme.txt").write_text("four")
  assert data.load_documents(str(folder)) == ["one", "two", "three", "four"]
  assert data.load_documents(str(folder / "part-*")) == ["one", "two", "three"]


def test_shared_tinystories_reads_all_stories():
  docs = data.load_documents(str(shared_corpus("tinystories/stories.jsonl.xz")))
  assert len(docs) == 5478  # its PROVENANCE.md
  train, held = data.split_documents(docs, 0.1)
  assert len(held) == 548 and train + held == docs


def test_the_generated_corpus_and_the_old_embedded_name_are_not_text():
  with pytest.raises(UserError, match="no text documents"):
    data.load_documents("synthetic")
  with pytest.raises(UserError, match="no longer shipped"):
    data.load_documents("embedded")


def test_text_file_folder_glob_and_jsonl(tmp_path):
  (tmp_path / "a.txt").write_text("first doc.\n\nsecond doc.\n\n\nthird.")
  assert data.load_documents(str(tmp_path / "a.txt")) == ["first doc.", "second doc.", "third."]
  folder = tmp_path / "f"
  folder.mkdir()
  (folder / "x.txt").write_text("one")
  (folder / "y.md").write_text("two\n\nstill two")
  (folder / "z.bin").write_bytes(b"\x00\x01")
  assert data.load_documents(str(folder)) == ["one", "two\n\nstill two"]
  assert data.load_documents(str(folder / "*.txt")) == ["one"]
  lines = [json.dumps({"body": t}) for t in ("alpha", "", "beta")]
  (tmp_path / "c.jsonl").write_text("\n".join(lines))
  assert data.load_documents(str(tmp_path / "c.jsonl"), text_field="body") == ["alpha", "beta"]


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"   \n\n  ", "empty"),
    (b"caf\xe9 latin-1", "not UTF-8"),
    (b"\x00\x01\x02binary", "binary"),
])
def test_bad_corpora(tmp_path, content, message):
  path = tmp_path / "bad.txt"
  path.write_bytes(content)
  with pytest.raises(UserError, match=message):
    data.load_documents(str(path))


def test_missing_corpus_and_bad_jsonl(tmp_path):
  with pytest.raises(UserError, match="does not exist"):
    data.load_documents(str(tmp_path / "nope.txt"))
  (tmp_path / "d.jsonl").write_text('{"text": "ok"}\n{"other": 1}\n')
  with pytest.raises(UserError, match="no field 'text'"):
    data.load_documents(str(tmp_path / "d.jsonl"))


def _corpus(tmp_path, n_docs=40):
  return words_corpus(tmp_path, n_docs)


def test_store_is_cached_and_tokens_round_trip(tmp_path, monkeypatch):
  source = _corpus(tmp_path)
  store = build_store(data_spec(source=source, vocab_size=300, cache_dir=str(tmp_path / "cache")),
                      verbose=False)

  def must_not_run(*args, **kwargs):
    raise AssertionError("a cached tokenizer or store was built again")
  # The second build is a cache hit: neither the tokenizer is trained nor the text encoded.
  monkeypatch.setattr(datalib, "train_tokenizer", must_not_run)
  monkeypatch.setattr(datalib, "encode_with_lengths", must_not_run)
  again = build_store(data_spec(source=source, vocab_size=300, cache_dir=str(tmp_path / "cache")),
                      verbose=False)
  monkeypatch.undo()
  assert again.folder == store.folder
  np.testing.assert_array_equal(store.train_T, again.train_T)
  assert store.meta["n_docs_train"] == 36 and store.meta["n_docs_eval"] == 4
  assert store.train_T.dtype == np.uint16
  # Decoding the token stream gives back the documents (EOS between them).
  eos = store.tokenizer.token_to_id(datalib.EOS)
  text = store.tokenizer.decode([int(t) for t in store.eval_T if t != eos])
  held = data.split_documents(data.load_documents(source), 0.1)[1]
  assert text.replace(" ", "") == "".join(held).replace(" ", "")
  # The tokenizer was cached: a saved copy loads and gives the same ids.
  saved = tmp_path / "tok.json"
  saved.write_text(store.tokenizer.to_str())
  loaded = build_store(data_spec(source=source, vocab_size=300, tokenizer=str(saved),
                                   cache_dir=str(tmp_path / "cache")), verbose=False)
  np.testing.assert_array_equal(loaded.train_T, store.train_T)


def test_unigram_entropy_against_counts(tmp_path):
  store = build_store(data_spec(source=_corpus(tmp_path), vocab_size=300,
                                cache_dir=str(tmp_path / "c")), verbose=False)
  ids, counts = np.unique(np.asarray(store.train_T), return_counts=True)
  p = counts / counts.sum()
  assert store.unigram_entropy() == pytest.approx(-(p * np.log(p)).sum(), rel=1e-9)


def test_batches_are_a_pure_function_of_seed_step_and_process():
  tokens = np.arange(10_000, dtype=np.uint16)
  src = datalib.WindowBatches(tokens, 16, 8, 100, seed=3)
  b5 = src[5]
  assert b5.shape == (8, 17)
  np.testing.assert_array_equal(b5, datalib.WindowBatches(tokens, 16, 8, 100, seed=3)[5])
  assert not np.array_equal(b5, src[6])
  np.testing.assert_array_equal(np.diff(b5, axis=1), 1)  # consecutive windows
  # Two processes each take their half of the same global batch.
  halves = [datalib.WindowBatches(tokens, 16, 8, 100, seed=3, process_index=p, process_count=2)[5]
            for p in (0, 1)]
  np.testing.assert_array_equal(np.concatenate(halves), b5)
  # The grain iterator started at step 5 yields exactly the batches of steps 5, 6, ...
  it = datalib.train_iterator(src, 5)
  np.testing.assert_array_equal(next(it), b5)
  np.testing.assert_array_equal(next(it), src[6])


def test_d_limited_windows_stay_in_the_first_d_tokens():
  tokens = np.arange(10_000, dtype=np.uint16)
  src = datalib.WindowBatches(tokens, 16, 32, 50, seed=0, limit_tokens=100)
  assert max(src[s].max() for s in range(50)) < 100
  with pytest.raises(UserError, match="exceeds the training split"):
    datalib.WindowBatches(tokens, 16, 8, 10, seed=0, limit_tokens=20_000)


def test_corpus_shorter_than_a_window():
  with pytest.raises(UserError, match="shorter than one context window"):
    datalib.WindowBatches(np.arange(10, dtype=np.uint16), 16, 8, 10, seed=0)
  with pytest.raises(UserError, match="shorter than one context window"):
    datalib.eval_batches(np.arange(10, dtype=np.uint16), 16, 8, 2)


def test_eval_batches_fixed_and_disjoint():
  tokens = np.arange(1000, dtype=np.uint16)
  ev = datalib.eval_batches(tokens, 16, 4, 3)
  assert ev.shape == (3, 4, 17)
  np.testing.assert_array_equal(ev.reshape(-1, 17)[:, 0], np.arange(12) * 16)


def test_hf_local_dataset(tmp_path):
  datasets = pytest.importorskip("datasets")
  ds = datasets.Dataset.from_dict({"text": ["a story.", "another story."]})
  ds.save_to_disk(str(tmp_path / "ds"))
  assert data.load_documents(f"hf:{tmp_path / 'ds'}") == ["a story.", "another story."]


def test_one_epoch_sees_every_window_exactly_once():
  """tokens[i] = i, so a row's first token names its window: over one epoch (63 windows, 10.5
  steps of a global batch of 6) every window index appears exactly once, then the next epoch is
  another permutation of the same windows."""
  seq, n_tokens, batch = 16, 16 * 63 + 1, 6          # 63 non-overlapping windows
  tokens = np.arange(n_tokens, dtype=np.uint32)
  full = datalib.WindowBatches(tokens, seq, batch, 100, seed=7)
  assert full.n_windows == 63
  rows = np.concatenate([full[s] for s in range(21)])   # 126 rows: two epochs exactly
  first = rows[:, 0] // seq
  assert sorted(first[:63]) == list(range(63)) and sorted(first[63:]) == list(range(63))
  assert list(first[:63]) != list(first[63:])            # each epoch its own order
  np.testing.assert_array_equal(np.diff(rows, axis=1), 1)
  assert rows.max() == n_tokens - 1                       # the last token is reached, never past
  # Step 10 straddles the epochs (rows 60..65); three processes share each global batch.
  parts = [datalib.WindowBatches(tokens, seq, batch, 100, seed=7, process_index=p,
                              process_count=3)[10] for p in range(3)]
  np.testing.assert_array_equal(np.concatenate(parts), full[10])
  assert full.epoch_of(21) == pytest.approx(2.0)

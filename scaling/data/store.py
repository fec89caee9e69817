"""The token store, its one owner: a corpus tokenized once into a folder of shards that runs read.

    <store>/train-00000.bin …   training token ids (uint16 or uint32), documents joined, each
                                after EOS, cut into shards of `shard_tokens` tokens (the last one
                                shorter); a document may continue in the next shard
    <store>/eval-00000.bin …    the held-out documents, the same way
    <store>/tokenizer.json      the byte-level BPE tokenizer that made them
    <store>/meta.json           the index: every shard's file, tokens and hash; source, sizes,
                                dtype, vocabulary, the tokenizer's sample (written last)
    <store>/progress.json       only while being written: the finished shards and where the
                                encoding goes on (scaling/data/tokenize.py resumes from it after a kill)

Stores written before shards existed (train.bin, eval.bin; meta.json without "shards") are read
as one shard per split. `scaling tokenize` writes a store (scaling/data/tokenize.py) and prints its
folder; a run given `data.store=<folder>` opens it without reading the corpus again, and records
the store's folder and hash in its summary. Without `data.store` a run builds (or reuses) the
store of its corpus in the cache directory (encode.store_for).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from scaling import files
from scaling.data import loader as datalib
from scaling.data import ngram
from scaling.errors import UserError

META, PROGRESS, TOKENIZER = "meta.json", "progress.json", "tokenizer.json"
SPLITS = ("train", "eval")


class ShardedTokens:
  """One split's tokens over its shards, indexed like one flat array: `size`, `dtype`, integer
  index arrays of any shape (a window may straddle two shards) and contiguous slices."""

  def __init__(self, parts: list[np.ndarray]):
    self.parts = parts
    self.starts = np.cumsum([0] + [p.size for p in parts])
    self.size = int(self.starts[-1])
    self.dtype = parts[0].dtype

  def __len__(self) -> int:
    return self.size

  def __getitem__(self, key):
    if isinstance(key, slice):
      start, stop, step = key.indices(self.size)
      if step != 1:
        return self[np.arange(start, stop, step)]
      key = np.arange(start, max(start, stop))
    idx = np.asarray(key)
    scalar = idx.ndim == 0
    idx = np.atleast_1d(idx)
    if idx.size and (idx.min() < 0 or idx.max() >= self.size):
      raise IndexError(f"token index outside 0..{self.size - 1}")
    which = np.searchsorted(self.starts, idx, side="right") - 1
    out = np.empty(idx.shape, self.dtype)
    for s in np.unique(which):
      mask = which == s
      out[mask] = self.parts[s][idx[mask] - self.starts[s]]
    return out[0] if scalar else out

  def __array__(self, dtype=None, copy=None):
    out = np.concatenate(self.parts)
    return out.astype(dtype) if dtype is not None else out


def parts_of(tokens_T) -> list[np.ndarray]:
  """The shards of a split's tokens (a plain array is one)."""
  return tokens_T.parts if isinstance(tokens_T, ShardedTokens) else [tokens_T]


@dataclasses.dataclass
class TokenStore:
  """The corpus tokenized once: memory-mapped train and eval tokens plus their sizes."""
  train_T: np.ndarray | ShardedTokens
  eval_T: np.ndarray | ShardedTokens
  n_vocab: int
  tokenizer: object
  meta: dict
  folder: Path

  @property
  def sha256_16(self) -> str:
    """The store's identity: a hash of its training and held-out text and its tokenizer."""
    return self.meta.get("store_sha256_16") or self.folder.name

  def summary(self) -> str:
    m = self.meta
    n_shards = sum(len(v) for v in m.get("shards", {}).values()) or 2
    text = (f"{m['n_bytes_train']:,} + {m['n_bytes_eval']:,} bytes, "
            if m.get("n_bytes_train") is not None else "")
    floor = (f", entropy rate {self.entropy_rate():.4f} nats/token (the generated corpus: its "
             "symbols are the tokens)" if self.entropy_rate() is not None else "")
    return (f"corpus: {m['n_docs_train']:,} + {m['n_docs_eval']:,} documents (train + held out), "
            f"{text}{m['n_tokens_train']:,} + {m['n_tokens_eval']:,} tokens in {n_shards} "
            f"shards, vocabulary {self.n_vocab:,}{floor}")

  def entropy_rate(self) -> float | None:
    """The exact entropy rate (nats/token) of a generated corpus (scaling/data/generated.py): no
    model's held-out loss can lie below it. None for real text, whose is unknown."""
    return self.meta.get("entropy_rate_nats")

  def unigram_entropy(self) -> float:
    """Entropy (nats/token) of the training split's unigram distribution: the loss of a model
    that ignores context. A trained model must end clearly below it. (Recorded in meta.json when
    the store is written; counted here for stores written before.)"""
    recorded = self.meta.get("unigram_entropy_train")
    return recorded if recorded is not None else unigram_entropy(self.train_T, self.n_vocab)

  def bigram_loss(self) -> float | None:
    """Held-out loss (nats/token) of a smoothed bigram model of the training split
    (scaling/data/ngram.py): a model near it predicts from the previous token only. Recorded in
    meta.json when the store is written; counted here (a second or so) for older stores."""
    if "bigram_loss_eval" in self.meta:
      return self.meta["bigram_loss_eval"]
    return ngram.bigram_loss(
        parts_of(self.train_T), parts_of(self.eval_T), self.n_vocab)


def unigram_entropy(tokens_T, n_vocab: int, chunk_tokens: int = 1 << 22) -> float:
  """Entropy (nats/token) of the token frequencies, counted a few million tokens at a time."""
  counts = np.zeros(n_vocab, np.int64)
  for part in parts_of(tokens_T):
    for start in range(0, part.size, chunk_tokens):
      counts += np.bincount(np.asarray(part[start:start + chunk_tokens]), minlength=n_vocab)
  return _entropy(counts)


def _entropy(counts: np.ndarray) -> float:
  p = counts[counts > 0] / counts.sum()
  return float(-(p * np.log(p)).sum())


def _file_tokens(path: Path, dtype: np.dtype, chunk_tokens: int = 1 << 22):
  """A shard file's tokens read a chunk at a time (no mapping: its pages do not stay resident)."""
  with open(path, "rb") as f:
    while True:
      chunk = np.fromfile(f, dtype=dtype, count=chunk_tokens)
      if not chunk.size:
        return
      yield chunk


def _max_token(tokens_T: np.ndarray, full_below: int = 100_000_000) -> int:
  """The largest token id: every token of a shard up to 1e8 tokens (a fraction of a second), 256
  evenly spread blocks of 4096 beyond (contiguous, so that few pages are read), so that opening a
  huge store stays cheap. A store made with another tokenizer has out-of-range ids everywhere,
  which a sample finds as well."""
  if tokens_T.size <= full_below:
    return int(tokens_T.max()) if tokens_T.size else 0
  starts = np.linspace(0, tokens_T.size - 4096, 256).astype(np.int64)
  return max(int(tokens_T[s:s + 4096].max()) for s in starts)


def read_json(path: Path, what: str) -> dict:
  """meta.json or progress.json, or a one-line error saying what to do."""
  try:
    doc = json.loads(path.read_text())
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise UserError(f"{path} cannot be read ({' '.join(str(e).split())}); delete the folder "
                    f"{path.parent} and rerun (the store is rebuilt from the corpus)") from None
  if not isinstance(doc, dict):
    raise UserError(f"{path} is not a token store's {what} (not an object); delete the folder "
                    f"{path.parent} and rerun")
  return doc


def _read_meta(path: Path) -> dict:
  meta = read_json(path, "meta.json")
  if not {"dtype", "n_tokens_train", "n_tokens_eval"} <= set(meta):
    raise UserError(f"{path} is not a token store's meta.json (fields missing); delete the "
                    f"folder {path.parent} and rerun")
  return meta


def tokenizer_hash(tok) -> str:
  return hashlib.sha256(tok.to_str().encode("utf-8")).hexdigest()[:16]


def shard_list(meta: dict, split: str) -> list[dict]:
  """A split's shards as recorded in meta.json (a store without shards: one file per split)."""
  if "shards" in meta:
    return meta["shards"][split]
  return [{"file": f"{split}.bin", "n_tokens": meta[f"n_tokens_{split}"]}]


def _map_split(folder: Path, meta: dict, split: str, dtype: np.dtype):
  """Memory-maps a split's shards after checking each file's size against the index."""
  parts = []
  for shard in shard_list(meta, split):
    path = folder / shard["file"]
    size = path.stat().st_size if path.is_file() else -1
    if size != shard["n_tokens"] * dtype.itemsize:
      raise UserError(f"token store {folder}: {shard['file']} holds {max(size, 0):,} bytes, not the "
                      f"{shard['n_tokens'] * dtype.itemsize:,} its meta.json records "
                      "(truncated?); delete the folder and rerun")
    parts.append(np.memmap(path, dtype=dtype, mode="r"))
  return parts[0] if len(parts) == 1 else ShardedTokens(parts)


def open_store(folder, tok=None, verbose: bool = False) -> TokenStore:
  """Memory-maps a store folder, checking its files against meta.json and its token ids against
  the tokenizer (the store's own tokenizer.json when `tok` is None)."""
  folder = Path(folder)
  meta_path = folder / META
  if not meta_path.is_file():
    hint = (" (it is being written or was stopped: rerun `scaling tokenize` to finish it)"
            if (folder / PROGRESS).is_file() else "; write one with `scaling tokenize`")
    raise UserError(f"{folder} is not a token store (no meta.json){hint}")
  meta = _read_meta(meta_path)
  if tok is None:
    tok = datalib.load_tokenizer(folder / TOKENIZER)
  n_vocab = tok.get_vocab_size()
  if meta.get("tokenizer_sha256_16") != tokenizer_hash(tok) or meta.get("n_vocab") != n_vocab:
    raise UserError(f"token store {folder} was made with another tokenizer; delete it and rerun")
  dtype = np.dtype(meta["dtype"])
  train_T, eval_T = (_map_split(folder, meta, split, dtype) for split in SPLITS)
  top = max(_max_token(p) for t in (train_T, eval_T) for p in parts_of(t))
  if top >= n_vocab:
    raise UserError(f"token store {folder} holds token id {top}, outside the tokenizer's "
                    f"vocabulary of {n_vocab}; the store does not match the tokenizer: delete the "
                    "folder and rerun")
  store = TokenStore(train_T, eval_T, n_vocab, tok, meta, folder)
  if verbose:
    print(store.summary(), flush=True)
  return store


def check_folder(folder: Path, content: str) -> bool:
  """Whether `folder` already holds the finished store of this content (meta.json's
  content_sha256_16); refuses a folder holding anything else, and a path that is a file."""
  if folder.exists() and not folder.is_dir():
    raise UserError(f"{folder} is a file, not a folder; give a new or empty folder for the token "
                    "store")
  meta = folder / META
  if meta.is_file():
    found = read_json(meta, "meta.json").get("content_sha256_16")
    if found != content:
      raise UserError(f"{folder} holds a token store of another corpus, tokenizer or split"
                      f"{' (or one written by an older version)' if found is None else ''}; "
                      "choose another folder or delete it")
    return True
  if folder.is_dir() and any(folder.iterdir()) and not (folder / PROGRESS).is_file():
    raise UserError(f"{folder} is not empty and holds no token store; give an empty or new folder")
  return False


class ShardWriter:
  """Writes the token stream (training documents, then held-out ones) into shards of
  `shard_tokens` tokens. Each shard is written as <name>.partial, synced and renamed when full;
  then progress.json records it with the place the stream goes on (a document index and how many
  of that document's tokens the finished shards already hold). A writer opened on a folder whose
  progress.json belongs to the same corpus, tokenizer and layout keeps the finished shards and
  resumes there; anything else in the folder (a killed write's temporary files too) is
  removed first."""

  def __init__(self, folder: Path, identity: dict):
    self.folder, self.identity = Path(folder), identity
    self.dtype = np.dtype(identity["dtype"])
    self.shard_tokens = int(identity["shard_tokens"])
    self.shards = {split: [] for split in SPLITS}
    self.next_doc, self.skip_tokens = 0, 0
    self._file, self._hash, self._filled = None, None, 0
    self.folder.mkdir(parents=True, exist_ok=True)
    self._resume_or_clear()

  def _resume_or_clear(self) -> None:
    path = self.folder / PROGRESS
    state = read_json(path, "progress.json") if path.is_file() else {}
    if state.get("identity") == self.identity and self._shards_intact(state["shards"]):
      self.shards = state["shards"]
      self.next_doc, self.skip_tokens = state["next_doc"], state["skip_tokens"]
    keep = {s["file"] for split in SPLITS for s in self.shards[split]} | {PROGRESS}
    for p in self.folder.iterdir():
      if p.is_file() and p.name not in keep and (p.suffix in (".bin", ".partial")
                                                  or p.name in (META, PROGRESS)
                                                  or ".tmp" in p.name):  # a killed atomic write
        p.unlink()

  def _shards_intact(self, shards: dict) -> bool:
    return all((self.folder / s["file"]).is_file()
               and (self.folder / s["file"]).stat().st_size == s["n_tokens"] * self.dtype.itemsize
               for split in SPLITS for s in shards.get(split, []))

  @property
  def resuming(self) -> bool:
    return self.next_doc > 0 or self.skip_tokens > 0

  def write(self, split: str, tokens: np.ndarray, lengths: np.ndarray, first_doc: int,
            skip: int = 0) -> None:
    """Appends the tokens of documents first_doc, first_doc + 1, … (their token counts in
    `lengths`) to the split's shards, leaving out the first `skip` (already written)."""
    pos = skip
    ends = np.cumsum(lengths)
    while pos < tokens.size:
      if self._file is None:
        self._open_shard(split)
      take = min(self.shard_tokens - self._filled, tokens.size - pos)
      piece = np.ascontiguousarray(tokens[pos:pos + take], self.dtype)
      self._file.write(piece.tobytes())
      self._hash.update(piece.tobytes())
      self._filled += take
      pos += take
      if self._filled == self.shard_tokens:
        done = int(np.searchsorted(ends, pos, side="right"))  # documents wholly written
        before = int(ends[done - 1]) if done else 0
        self._finish_shard(split, first_doc + done, pos - before)

  def end_split(self, split: str, next_doc: int) -> None:
    """Closes the split's last (shorter) shard; the stream goes on at document `next_doc`."""
    if self._file is not None:
      self._finish_shard(split, next_doc, 0)

  def _open_shard(self, split: str) -> None:
    name = f"{split}-{len(self.shards[split]):05d}.bin"
    self._file = open(self.folder / (name + ".partial"), "wb")
    self._hash, self._filled, self._name = hashlib.sha256(), 0, name

  def _finish_shard(self, split: str, next_doc: int, skip_tokens: int) -> None:
    self._file.flush()
    os.fsync(self._file.fileno())
    self._file.close()
    os.chmod(self._file.name, 0o644)
    os.replace(self._file.name, self.folder / self._name)
    self.shards[split].append({"file": self._name, "n_tokens": self._filled,
                               "sha256_16": self._hash.hexdigest()[:16]})
    self._file = None
    self.next_doc, self.skip_tokens = next_doc, skip_tokens
    files.atomic_write_text(self.folder / PROGRESS, json.dumps(
        {"identity": self.identity, "shards": self.shards, "next_doc": next_doc,
         "skip_tokens": skip_tokens}, indent=1))

  def _mapped(self, split: str) -> list[np.ndarray]:
    return [np.memmap(self.folder / s["file"], dtype=self.dtype, mode="r")
            for s in self.shards[split] if s["n_tokens"]]

  def finish(self, tok, meta: dict) -> None:
    """Writes tokenizer.json, then meta.json (the index, last), and removes progress.json."""
    files.atomic_write_bytes(self.folder / TOKENIZER, tok.to_str().encode("utf-8"))
    counts = np.zeros(tok.get_vocab_size(), np.int64)
    for shard in self.shards["train"]:
      for chunk in _file_tokens(self.folder / shard["file"], self.dtype):
        counts += np.bincount(chunk, minlength=counts.size)
    meta = dict(meta, **self.identity, shards=self.shards,
                unigram_entropy_train=_entropy(counts),
                bigram_loss_eval=ngram.bigram_loss(self._mapped("train"), self._mapped("eval"),
                                                   counts.size),
                n_tokens_train=sum(s["n_tokens"] for s in self.shards["train"]),
                n_tokens_eval=sum(s["n_tokens"] for s in self.shards["eval"]))
    files.atomic_write_bytes(self.folder / META, json.dumps(meta, indent=1).encode())
    (self.folder / PROGRESS).unlink(missing_ok=True)

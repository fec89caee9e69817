"""The token store, its one owner: a corpus tokenized once into a folder that runs read.

    <store>/train.bin, eval.bin   token ids (uint16 or uint32), documents joined, each after EOS
    <store>/tokenizer.json        the byte-level BPE tokenizer that made them
    <store>/meta.json             source, sizes, dtype, vocabulary, hashes (written last)

`scaling tokenize` writes a store and prints its folder; a run given `data.store=<folder>` opens
it without reading the corpus again, and records the store's folder and hash in its summary.
Without `data.store` a run builds (or reuses) the store of its corpus in the cache directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from scaling import data as datalib
from scaling import files
from scaling.errors import UserError
from scaling.spec import DataSpec


@dataclasses.dataclass
class TokenStore:
  """The corpus tokenized once: memory-mapped train and eval token arrays plus their sizes."""
  train_T: np.ndarray
  eval_T: np.ndarray
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
    return (f"corpus: {m['n_docs_train']:,} + {m['n_docs_eval']:,} documents (train + held out), "
            f"{m['n_bytes_train']:,} + {m['n_bytes_eval']:,} bytes, "
            f"{m['n_tokens_train']:,} + {m['n_tokens_eval']:,} tokens, vocabulary {self.n_vocab:,}")

  def unigram_entropy(self) -> float:
    """Entropy (nats/token) of the training split's unigram distribution: the loss of a model
    that ignores context. A trained model must end clearly below it."""
    counts = np.bincount(np.asarray(self.train_T), minlength=self.n_vocab).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def _max_token(tokens_T: np.ndarray, full_below: int = 100_000_000) -> int:
  """The largest token id: every token of a store up to 1e8 tokens (a fraction of a second), a
  strided tenth-of-a-percent sample beyond, so that opening a huge store stays cheap. A store made
  with another tokenizer has out-of-range ids everywhere, which a sample finds as well."""
  if tokens_T.size <= full_below:
    return int(tokens_T.max()) if tokens_T.size else 0
  return int(tokens_T[::997].max())


def _key(train_docs, eval_docs, tok_hash: str) -> str:
  text = f"{datalib.hash_docs(train_docs)}:{datalib.hash_docs(eval_docs)}:{tok_hash}"
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _write(folder: Path, tok, train_docs, eval_docs, source: str, key: str,
           vocab_requested: int | None) -> None:
  """Encodes both splits into `folder`; meta.json is written last, so a store without it is
  unfinished and is written again."""
  n_vocab = tok.get_vocab_size()
  eos_id = tok.token_to_id(datalib.EOS)
  dtype = np.uint16 if n_vocab <= 2**16 else np.uint32
  train_T = datalib.encode(tok, train_docs, eos_id, dtype)
  eval_T = datalib.encode(tok, eval_docs, eos_id, dtype)
  files.atomic_write_bytes(folder / "train.bin", train_T.tobytes())
  files.atomic_write_bytes(folder / "eval.bin", eval_T.tobytes())
  files.atomic_write_bytes(folder / "tokenizer.json", tok.to_str().encode("utf-8"))
  meta = {
      "source": source, "tokenizer_sha256_16": tokenizer_hash(tok), "store_sha256_16": key,
      "dtype": np.dtype(dtype).name, "n_vocab": n_vocab, "vocab_size_requested": vocab_requested,
      "eos_id": eos_id,
      "n_docs_train": len(train_docs), "n_docs_eval": len(eval_docs),
      "n_bytes_train": sum(len(d.encode("utf-8")) for d in train_docs),
      "n_bytes_eval": sum(len(d.encode("utf-8")) for d in eval_docs),
      "n_tokens_train": int(train_T.size), "n_tokens_eval": int(eval_T.size),
  }
  files.atomic_write_bytes(folder / "meta.json", json.dumps(meta, indent=1).encode())


def _read_meta(path: Path) -> dict:
  try:
    meta = json.loads(path.read_text())
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise UserError(f"{path} cannot be read ({' '.join(str(e).split())}); delete the folder "
                    f"{path.parent} and rerun (the store is rebuilt from the corpus)") from None
  if not isinstance(meta, dict) or not {"dtype", "n_tokens_train", "n_tokens_eval"} <= set(meta):
    raise UserError(f"{path} is not a token store's meta.json (fields missing); delete the "
                    f"folder {path.parent} and rerun")
  return meta


def tokenizer_hash(tok) -> str:
  return hashlib.sha256(tok.to_str().encode("utf-8")).hexdigest()[:16]


def open_store(folder, tok=None, verbose: bool = False) -> TokenStore:
  """Memory-maps a store folder, checking its files against meta.json and its token ids against
  the tokenizer (the store's own tokenizer.json when `tok` is None)."""
  folder = Path(folder)
  meta_path = folder / "meta.json"
  if not meta_path.is_file():
    raise UserError(f"{folder} is not a token store (no meta.json); write one with "
                    "`scaling tokenize`")
  meta = _read_meta(meta_path)
  if tok is None:
    tok = datalib.load_tokenizer(folder / "tokenizer.json")
  n_vocab = tok.get_vocab_size()
  if meta.get("tokenizer_sha256_16") != tokenizer_hash(tok) or meta.get("n_vocab") != n_vocab:
    raise UserError(f"token store {folder} was made with another tokenizer; delete it and rerun")
  dtype = np.dtype(meta["dtype"])
  for split in ("train", "eval"):
    size = (folder / f"{split}.bin").stat().st_size if (folder / f"{split}.bin").is_file() else -1
    if size != meta[f"n_tokens_{split}"] * dtype.itemsize:
      raise UserError(f"token store {folder}: {split}.bin holds {max(size, 0):,} bytes, not the "
                      f"{meta[f'n_tokens_{split}'] * dtype.itemsize:,} its meta.json records "
                      "(truncated?); delete the folder and rerun")
  train_T = np.memmap(folder / "train.bin", dtype=dtype, mode="r")
  eval_T = np.memmap(folder / "eval.bin", dtype=dtype, mode="r")
  top = max(_max_token(train_T), _max_token(eval_T))
  if top >= n_vocab:
    raise UserError(f"token store {folder} holds token id {top}, outside the tokenizer's "
                    f"vocabulary of {n_vocab}; the store does not match the tokenizer: delete the "
                    "folder and rerun")
  store = TokenStore(train_T, eval_T, n_vocab, tok, meta, folder)
  if verbose:
    print(store.summary(), flush=True)
  return store


def build_store(data: DataSpec, out: str = "", verbose: bool = True) -> TokenStore:
  """Reads, splits and tokenizes the corpus of `data` into a store: in `out` when given, else in
  the cache directory under the store's hash (reused when already there)."""
  docs = datalib.load_documents(data.source, data.text_field)
  train_docs, eval_docs = datalib.split_documents(docs, data.eval_fraction)
  tok = datalib.get_tokenizer(train_docs, data.vocab_size, data.tokenizer, data.cache_dir)
  if tok.token_to_id(datalib.EOS) is None:
    raise UserError(f"the tokenizer has no {datalib.EOS} token; train one with scaling or add it")
  if not data.tokenizer and tok.get_vocab_size() < data.vocab_size and verbose:
    print(f"note: data.vocab_size={data.vocab_size:,} was asked, but this corpus's training text "
          f"gives only {tok.get_vocab_size():,} tokens (BPE ran out of pairs to merge); runs use "
          f"{tok.get_vocab_size():,} (both recorded: vocab_size_requested and n_vocab in the "
          "store's meta.json and each run's summary.json)", flush=True)
  key = _key(train_docs, eval_docs, tokenizer_hash(tok))
  folder = Path(out) if out else datalib.cache_root(data.cache_dir) / "stores" / key
  meta = folder / "meta.json"
  if meta.is_file() and _read_meta(meta).get("store_sha256_16", key) != key:
    raise UserError(f"{folder} holds a token store of another corpus or tokenizer; choose "
                    "another folder or delete it")
  if not meta.is_file():
    _write(folder, tok, train_docs, eval_docs, data.source, key,
           None if data.tokenizer else data.vocab_size)
  return open_store(folder, tok, verbose)


def store_for(data: DataSpec, verbose: bool = True) -> TokenStore:
  """The store a run trains on: data.store when set, else the corpus's store in the cache."""
  if data.store:
    return open_store(data.store, verbose=verbose)
  return build_store(data, verbose=verbose)

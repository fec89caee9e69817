"""The tokenize stage: a corpus streamed into a sharded token store (scaling/data/store.py) in
bounded memory, whatever its size.

Pass 1 reads the documents once (scaling/data/sources.py): their count (the held-out split is the
last `data.eval_fraction` of them), the corpus's identity hash, and an evenly spread sample of at
most `data.tokenizer_sample_bytes` on which the BPE is trained (every document when the corpus is
smaller). Pass 2 reads them again and encodes them a chunk at a time into store.ShardWriter:
tokenizers encodes a chunk on every core (Rust threads, the GIL released) while this thread reads
the next one. A killed pass 2 resumes at its last finished shard and writes the same bytes.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import time
from pathlib import Path

import numpy as np

from scaling.data import loader as datalib
from scaling.data import sources
from scaling.data import store as storelib
from scaling.data import tokenize_generated
from scaling.errors import UserError
from scaling.train import remote
from scaling.train import runlock

CHUNK_BYTES = 2 << 20          # text encoded at once (its Encoding objects: ~50 bytes a token)
_PROGRESS_EVERY_S = 10.0


class _Progress:
  """A line every few seconds on long work (nothing on work that ends sooner)."""

  def __init__(self, verbose: bool, what: str, total_bytes: int = 0):
    self.verbose, self.what, self.total = verbose, what, total_bytes
    self.t0 = self.last = time.monotonic()

  def tick(self, n_bytes: int, extra: str = "") -> None:
    now = time.monotonic()
    if not self.verbose or now - self.last < _PROGRESS_EVERY_S:
      return
    self.last = now
    rate = n_bytes / 1e6 / max(now - self.t0, 1e-9)
    share = f" of {self.total / 1e6:,.0f} MB ({100 * n_bytes / self.total:.0f} %)" if self.total else ""
    print(f"{self.what}: {n_bytes / 1e6:,.0f} MB{share}, {rate:.1f} MB/s{extra}", flush=True)


class _Sample:
  """Every stride-th document, the stride doubling (and the kept documents thinned to its
  multiples) whenever they exceed the budget: an evenly spread sample of ≤ budget bytes, all
  documents when the corpus is smaller."""

  def __init__(self, budget_bytes: int):
    self.budget, self.stride, self.n_bytes = budget_bytes, 1, 0
    self.docs: list[tuple[int, str, int]] = []

  def offer(self, i: int, doc: str, n_bytes: int) -> None:
    if i % self.stride:
      return
    self.docs.append((i, doc, n_bytes))
    self.n_bytes += n_bytes
    while self.n_bytes > self.budget and len(self.docs) > 1:
      self.stride *= 2
      self.docs = [d for d in self.docs if d[0] % self.stride == 0]
      self.n_bytes = sum(d[2] for d in self.docs)


@dataclasses.dataclass
class Scan:
  n_docs: int
  n_bytes: int
  content_hash: str        # data.DocsHash of every document, in order
  sample: _Sample


def scan(source: str, text_field: str, sample_bytes: int, verbose: bool) -> Scan:
  """Pass 1: count, hash and sample the documents."""
  h, sample = datalib.DocsHash(), _Sample(sample_bytes)
  progress = _Progress(verbose, "tokenize: reading")
  for i, doc in enumerate(sources.iter_documents(source, text_field)):
    utf8 = doc.encode("utf-8")
    h.add(utf8)
    sample.offer(i, doc, len(utf8))
    progress.tick(h.n_bytes, f", {h.n_docs:,} documents")
  return Scan(h.n_docs, h.n_bytes, h.hexdigest(), sample)


def _encode_stream(data, tok, writer: storelib.ShardWriter, n_train: int, total_bytes: int,
                   verbose: bool) -> dict:
  """Pass 2: every document into the writer from where it stands; returns the splits' document
  and byte counts and the store's identity hash (data.DocsHash of each split)."""
  eos_id = tok.token_to_id(datalib.EOS)
  hashes = {split: datalib.DocsHash() for split in storelib.SPLITS}
  progress = _Progress(verbose, "tokenize: encoding", total_bytes)
  chunk: list[str] = []
  chunk_bytes, chunk_first, pending = 0, 0, None
  with concurrent.futures.ThreadPoolExecutor(1) as pool:

    def submit(split, first):
      nonlocal pending, chunk, chunk_bytes
      drain()
      if chunk:
        skip = writer.skip_tokens if first == writer.next_doc else 0
        fut = pool.submit(datalib.encode_with_lengths, tok, chunk, eos_id, writer.dtype)
        pending, chunk, chunk_bytes = (fut, split, first, skip), [], 0

    def drain():
      nonlocal pending
      if pending:
        fut, split, first, skip = pending
        tokens, lengths = fut.result()
        writer.write(split, tokens, lengths, first, skip)
        pending = None

    start = writer.next_doc
    for i, doc in enumerate(sources.iter_documents(data.source, data.text_field)):
      split = "train" if i < n_train else "eval"
      if i == n_train:
        submit("train", chunk_first)
        drain()
        writer.end_split("train", n_train)
      utf8 = doc.encode("utf-8")
      hashes[split].add(utf8)
      if i < start:
        continue
      if not chunk:
        chunk_first = i
      chunk.append(doc)
      chunk_bytes += len(utf8)
      if chunk_bytes >= CHUNK_BYTES:
        submit(split, chunk_first)
      progress.tick(hashes["train"].n_bytes + hashes["eval"].n_bytes,
                    f", {sum(len(v) for v in writer.shards.values())} shards done")
    submit("eval", chunk_first)
    drain()
    writer.end_split("eval", n_train + hashes["eval"].n_docs)
  return {"n_docs_train": hashes["train"].n_docs, "n_docs_eval": hashes["eval"].n_docs,
          "n_bytes_train": hashes["train"].n_bytes, "n_bytes_eval": hashes["eval"].n_bytes,
          "split_hashes": (hashes["train"].hexdigest(), hashes["eval"].hexdigest())}


def _tokenizer(data, scanned: Scan, n_train: int, verbose: bool):
  sample = [doc for i, doc, _ in scanned.sample.docs if i < n_train]
  if verbose and not data.tokenizer and scanned.sample.stride > 1:
    print(f"tokenize: the BPE is trained on one document in {scanned.sample.stride} "
          f"({scanned.sample.n_bytes / 1e6:,.0f} MB, data.tokenizer_sample_bytes="
          f"{data.tokenizer_sample_bytes:,})", flush=True)
  tok = datalib.get_tokenizer(sample, data.vocab_size, data.tokenizer, data.cache_dir)
  if tok.token_to_id(datalib.EOS) is None:
    raise UserError(f"the tokenizer has no {datalib.EOS} token; train one with scaling or add it")
  if not data.tokenizer and tok.get_vocab_size() < data.vocab_size and verbose:
    print(f"note: data.vocab_size={data.vocab_size:,} was asked, but this corpus's training text "
          f"gives only {tok.get_vocab_size():,} tokens (BPE ran out of pairs to merge); runs use "
          f"{tok.get_vocab_size():,} (both recorded: vocab_size_requested and n_vocab in the "
          "store's meta.json and each run's summary.json)", flush=True)
  return tok, sample


def _write(data, tok, tok_hash: str, folder: Path, content: str, scanned: Scan, n_train: int,
           sample: list, verbose: bool) -> None:
  n_vocab = tok.get_vocab_size()
  identity = {"content_sha256_16": content,
              "dtype": np.dtype(np.uint16 if n_vocab <= 2**16 else np.uint32).name,
              "shard_tokens": data.shard_tokens}
  writer = storelib.ShardWriter(folder, identity)
  if writer.resuming and verbose:
    print(f"tokenize: resuming {folder} at document {writer.next_doc:,} "
          f"({sum(len(v) for v in writer.shards.values())} shards kept)", flush=True)
  counts = _encode_stream(data, tok, writer, n_train, scanned.n_bytes, verbose)
  train_hash, eval_hash = counts.pop("split_hashes")
  key = hashlib.sha256(f"{train_hash}:{eval_hash}:{tok_hash}".encode()).hexdigest()[:16]
  writer.finish(tok, dict(
      counts, source=data.source, tokenizer_sha256_16=tok_hash, store_sha256_16=key,
      n_vocab=n_vocab, vocab_size_requested=None if data.tokenizer else data.vocab_size,
      eos_id=tok.token_to_id(datalib.EOS),
      tokenizer_sample={"budget_bytes": data.tokenizer_sample_bytes, "n_docs": len(sample),
                        "n_bytes": sum(b for i, _, b in scanned.sample.docs if i < n_train),
                        "every": scanned.sample.stride}))


def build_store(data, out: str = "", verbose: bool = True) -> storelib.TokenStore:
  """Reads, splits and tokenizes the corpus of `data` into a store: in `out` when given, else in
  the cache directory under the corpus's hash (reused when already there, finished when a previous
  build was stopped). The generated corpus is written by scaling/data/tokenize_generated.py."""
  if data.source == tokenize_generated.SOURCE:
    return tokenize_generated.build(data, out, verbose)
  scanned = scan(data.source, data.text_field, data.tokenizer_sample_bytes, verbose)
  n_eval = sources.n_held_out(scanned.n_docs, data.eval_fraction)
  n_train = scanned.n_docs - n_eval
  tok, sample = _tokenizer(data, scanned, n_train, verbose)
  tok_hash = storelib.tokenizer_hash(tok)
  content = hashlib.sha256(f"{scanned.content_hash}:{n_eval}:{tok_hash}".encode()).hexdigest()[:16]
  folder = Path(out) if out else datalib.cache_root(data.cache_dir) / "stores" / content
  if storelib.check_folder(folder, content):     # written already: read it (no lock needed)
    return storelib.open_store(folder, tok, verbose)
  say = (lambda m: print(m, flush=True)) if verbose else None
  with runlock.waiting(folder, say):   # one writer; another process building it waits
    if not storelib.check_folder(folder, content):
      _write(data, tok, tok_hash, folder, content, scanned, n_train, sample, verbose)
  return storelib.open_store(folder, tok, verbose)


def store_for(data, verbose: bool = True) -> storelib.TokenStore:
  """The store a run trains on: data.store when set (a local copy when it is a URL), else the
  corpus's store in the cache, built when missing."""
  if data.store:
    folder, _ = remote.store_folder(data.store, datalib.cache_root(data.cache_dir))
    return storelib.open_store(folder, verbose=verbose)
  return build_store(data, verbose=verbose)

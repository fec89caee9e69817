"""The byte-level BPE tokenizer; token windows → grain batches. (Documents come from
scaling/data/sources.py; the token store, written by scaling/data/tokenize.py, is
scaling/data/store.py.)

The split is by document: the last `data.eval_fraction` of the documents are held out and never
trained on. The batch at step s is a pure function of (seed, s, process index), so a resumed run
sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import grain
import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from scaling import files
from scaling.data.sources import load_documents
from scaling.errors import UserError

EOS = "<|endoftext|>"


# ---------------------------------------------------------------------------------------------
# Tokenizer.


class DocsHash:
  """The identity of a sequence of documents: sha256 over each document's own sha256 digest, in
  order, fed one document at a time (with their count and UTF-8 bytes)."""

  def __init__(self):
    self._h, self.n_docs, self.n_bytes = hashlib.sha256(), 0, 0

  def add(self, doc_utf8: bytes) -> None:
    self._h.update(hashlib.sha256(doc_utf8).digest())
    self.n_docs += 1
    self.n_bytes += len(doc_utf8)

  def hexdigest(self) -> str:
    return self._h.hexdigest()


def hash_docs(docs: list[str]) -> str:
  h = DocsHash()
  for d in docs:
    h.add(d.encode("utf-8"))
  return h.hexdigest()


cache_root = files.cache_root   # the cache folder (scaling/files.py owns the path)


def train_tokenizer(train_docs: list[str], vocab_size: int):
  """Byte-level BPE (GPT-2 style, as Kaplan 2020 §2.3) trained on the training split."""
  if vocab_size < 257 + 1:
    raise UserError(f"data.vocab_size={vocab_size} is too small for byte-level BPE (≥ 258)")
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(train_docs, trainer)
  return tok


def load_tokenizer(path) -> Tokenizer:
  """A tokenizers JSON file, or a one-line error."""
  path = Path(path).expanduser()
  if not path.is_file():
    raise UserError(f"tokenizer file {path} does not exist")
  try:
    return Tokenizer.from_file(str(path))
  except Exception as e:  # tokenizers raises plain Exceptions on malformed files
    raise UserError(f"{path} is not a tokenizers JSON file ({str(e).splitlines()[0]})") from None


def get_tokenizer(train_docs: list[str], vocab_size: int, tokenizer_path: str, cache_dir: str):
  """Loads `tokenizer_path` if given, else trains one on `train_docs` (the training split, or an
  evenly spread sample of it), cached by (their hash, vocab)."""
  if tokenizer_path:
    return load_tokenizer(tokenizer_path)
  key = hashlib.sha256(f"{hash_docs(train_docs)}:{vocab_size}:bpe-v1".encode()).hexdigest()[:16]
  path = cache_root(cache_dir) / "tokenizers" / f"bpe{vocab_size}-{key}.json"
  if path.is_file():
    try:
      return Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises plain Exceptions on malformed files
      raise UserError(f"the cached tokenizer {path} is damaged ({str(e).splitlines()[0]}); "
                      "delete it and rerun (it is trained again)") from None
  tok = train_tokenizer(train_docs, vocab_size)
  files.atomic_write_bytes(path, tok.to_str().encode("utf-8"))
  return tok


def encode_with_lengths(tok, docs: list[str], eos_id: int, dtype) -> tuple[np.ndarray, np.ndarray]:
  """Documents joined into one stream, each preceded by EOS, and each one's token count (EOS
  included). tokenizers encodes a batch on every core (its Rust threads, the GIL released)."""
  encs = tok.encode_batch_fast(docs) if hasattr(tok, "encode_batch_fast") else tok.encode_batch(docs)
  lengths = np.fromiter((len(e.ids) + 1 for e in encs), np.int64, len(encs))
  out = np.empty(int(lengths.sum()), dtype)
  ends = np.cumsum(lengths)
  for enc, end, n in zip(encs, ends, lengths):
    out[end - n] = eos_id
    out[end - n + 1:end] = enc.ids
  return out, lengths


def encode(tok, docs: list[str], eos_id: int, dtype) -> np.ndarray:
  """Documents joined into one stream, each preceded by EOS."""
  return encode_with_lengths(tok, docs, eos_id, dtype)[0]


# ---------------------------------------------------------------------------------------------
# Batches.


class WindowBatches:
  """Random-access source of training batches: item s is the batch of step s.

  Each row is a window of seq_len + 1 consecutive tokens (inputs and shifted targets) from the
  first `limit_tokens` training tokens. With sampling "epochs" (the default) the windows are the
  n_windows = (n − 1) // seq_len non-overlapping ones, every token predicted once per epoch, and
  each epoch visits them in a permutation seeded by (seed, epoch): global row r = s·batch + j is
  window perm_e[r mod n_windows] of epoch e = r // n_windows, so D is the tokens processed and a
  resumed run sees exactly the batches an uninterrupted one would. With "uniform" each row
  starts at a position drawn uniformly with a generator seeded by (seed, s) (with replacement:
  in one epoch's worth of steps about 37 % of windows are never seen). Process p of P takes rows
  [p·b, (p+1)·b) of the global batch, b = batch/P.
  """

  def __init__(self, tokens_T: np.ndarray, seq_len: int, global_batch: int, num_steps: int,
               seed: int, process_index: int = 0, process_count: int = 1, limit_tokens: int = 0,
               sampling: str = "epochs"):
    n = int(limit_tokens) if limit_tokens else int(tokens_T.size)
    if limit_tokens and limit_tokens > tokens_T.size:
      raise UserError(f"data.max_train_tokens={limit_tokens:,} exceeds the training split "
                      f"({tokens_T.size:,} tokens); lower it or use a larger corpus")
    if n < seq_len + 1:
      raise UserError(f"the training text has {n:,} tokens, shorter than one context window "
                      f"({seq_len + 1}); use a larger corpus or a smaller model.n_ctx")
    if global_batch % process_count:
      raise UserError(f"global batch {global_batch} is not divisible by {process_count} processes")
    self.tokens_T, self.seq_len, self.n = tokens_T, seq_len, n
    self.global_batch, self.num_steps, self.seed = global_batch, num_steps, seed
    self.local_batch = global_batch // process_count
    self.row0 = process_index * self.local_batch
    self.sampling = sampling
    self.n_windows = (n - 1) // seq_len
    self._perms: dict[int, np.ndarray] = {}

  def __len__(self) -> int:
    return self.num_steps

  def epoch_of(self, steps_done: int) -> float:
    """Epochs completed after `steps_done` steps (fractional): rows drawn / windows."""
    return steps_done * self.global_batch / self.n_windows

  def _permutation(self, epoch: int) -> np.ndarray:
    """Epoch `epoch`'s order of the windows (4 bytes a window; the two latest kept, since the
    loader's threads may straddle an epoch's end). Safe under those threads: a cache entry is
    one atomic dict item, read once."""
    perm = self._perms.get(epoch)
    if perm is None:
      dtype = np.int32 if self.n_windows < 2**31 else np.int64
      perm = np.random.default_rng((self.seed, epoch)).permutation(self.n_windows).astype(dtype)
      for old in [e for e in list(self._perms) if e < epoch - 1]:
        self._perms.pop(old, None)
      self._perms[epoch] = perm
    return perm

  def window_indices(self, step: int) -> np.ndarray:
    """The window index of each of this process's rows at `step` (epochs sampling)."""
    rows = int(step) * self.global_batch + self.row0 + np.arange(self.local_batch)
    epochs, pos = rows // self.n_windows, rows % self.n_windows
    out = np.empty(self.local_batch, np.int64)
    for e in np.unique(epochs):       # a batch may straddle two epochs
      mask = epochs == e
      out[mask] = self._permutation(int(e))[pos[mask]]
    return out

  def __getitem__(self, step: int) -> np.ndarray:
    if self.sampling == "epochs":   # (data.sampling, validated in scaling/config/spec.py)
      mine = self.window_indices(step) * self.seq_len
    else:
      rng = np.random.default_rng((self.seed, int(step)))
      starts = rng.integers(0, self.n - self.seq_len, size=self.global_batch)
      mine = starts[self.row0:self.row0 + self.local_batch]
    rows_BW = mine[:, None] + np.arange(self.seq_len + 1)[None]   # one gather, no Python loop
    return self.tokens_T[rows_BW].astype(np.int32)


def parse_skip_batches(spec: str) -> list[int]:
  """'41,57' → [41, 57]: steps (1-based, as logged) whose batches are left out."""
  try:
    steps = sorted({int(x) for x in str(spec).replace(" ", "").split(",") if x})
  except ValueError:
    raise UserError(f"train.skip_batches must be step numbers like '41,57', got {spec!r}") from None
  if steps and steps[0] < 1:
    raise UserError(f"train.skip_batches holds step {steps[0]}; steps start at 1")
  return steps


class SkipBatches:
  """The batches of `source` without those of the listed steps: step s (1-based) takes the next
  batch not skipped, so a run resumed with skip_batches=S never sees the batch that broke step S
  and otherwise keeps the deterministic order."""

  def __init__(self, source, skip_steps: list[int]):
    self.source, self.skip_idx = source, sorted(s - 1 for s in skip_steps)

  def __len__(self) -> int:
    return len(self.source) - len(self.skip_idx)

  def __getitem__(self, step: int) -> np.ndarray:
    j = int(step)
    for k in self.skip_idx:
      if k <= j:
        j += 1
    return self.source[j]


def train_iterator(source, start_step: int, num_threads: int = 2,
                   prefetch: int = 8):
  """A grain pipeline yielding the batches of steps start_step, start_step + 1, …"""
  ds = grain.MapDataset.source(source)[start_step:]
  read = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
  return iter(ds.to_iter_dataset(read))


def parse_eval_sources(spec: str) -> list[tuple[str, str]]:
  """'name=source,name=source' → [(name, source)] (extra held-out sets of eval.extra_sources)."""
  out = []
  for item in filter(None, (x.strip() for x in spec.split(","))):
    name, eq, source = item.partition("=")
    if not eq or not name.strip() or not source.strip():
      raise UserError(f"eval.extra_sources item {item!r} is not name=source "
                      "(e.g. python-docs=builtin:python-docs)")
    out.append((name.strip(), source.strip()))
  if len({n for n, _ in out}) != len(out):
    raise UserError("eval.extra_sources names must be distinct")
  return out


def extra_eval_tokens(tokenizer, source: str, text_field: str, lowercase: bool) -> np.ndarray:
  """An extra evaluation set tokenized with the run's tokenizer (documents EOS-separated as in
  the store), optionally lower-cased (for a lower-cased training corpus)."""
  docs = load_documents(source, text_field)
  if lowercase:
    docs = [d.lower() for d in docs]
  return encode(tokenizer, docs, tokenizer.token_to_id(EOS), np.int32)


def eval_batches(eval_T: np.ndarray, seq_len: int, batch: int, max_batches: int) -> np.ndarray:
  """Fixed held-out batches (n_batches, batch, seq_len + 1): consecutive non-overlapping windows
  from the start of the eval split, the same at every evaluation and in every run."""
  n_windows = (eval_T.size - 1) // seq_len
  if n_windows < 1:
    raise UserError(f"the held-out text has {eval_T.size:,} tokens, shorter than one context "
                    f"window ({seq_len + 1}); use a larger corpus or a smaller model.n_ctx")
  n_batches = max(1, min(max_batches, n_windows // batch))
  rows = min(n_windows, n_batches * batch)
  windows = np.stack([np.asarray(eval_T[i * seq_len:i * seq_len + seq_len + 1])
                      for i in range(rows)]).astype(np.int32)
  if rows < n_batches * batch:  # tiny eval split: repeat windows to fill one batch
    windows = np.resize(windows, (n_batches * batch, seq_len + 1))
  return windows.reshape(n_batches, batch, seq_len + 1)

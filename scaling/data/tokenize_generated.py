"""The tokenize stage for the generated corpus (data.source = "synthetic"): documents from
scaling/data/generated.py written straight into a token store (scaling/data/store.py). Its symbols
are the tokens: the store's tokenizer.json is a word-level table (`<|endoftext|>` = BOS, `<pad>`,
`s2` …), no BPE, and meta.json records the generator's parameters and its exact entropy rate. A
killed build resumes at its last finished shard and writes the same bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, models, pre_tokenizers

from scaling.data import generated, sources
from scaling.data import loader as datalib
from scaling.data import store as storelib
from scaling.errors import UserError
from scaling.train import runlock

SOURCE = sources.SYNTHETIC
_VERSION = "generated-v1"   # change when the generator's output changes


def source_params(data) -> generated.SourceParams:
  """The generator's parameters from a data spec (its vocabulary is data.vocab_size)."""
  s = data.synthetic
  return generated.SourceParams(
      seed=s.seed, vocab=data.vocab_size, doc_tokens=s.doc_tokens, n_patterns=s.n_patterns,
      zipf_exponent=s.zipf_exponent, pattern_tokens=s.pattern_tokens,
      slot_values=s.slot_values, n_topics=s.n_topics, topic_patterns=s.topic_patterns,
      topic_weight=s.topic_weight)


def symbol_tokenizer(vocab: int) -> Tokenizer:
  """A word-level tokenizer whose ids are the generated symbols (for decoding and the store's
  identity; nothing is ever segmented with it)."""
  table = {datalib.EOS: generated.BOS, "<pad>": generated.PAD}
  table.update({f"s{i}": i for i in range(generated.FIRST_SYMBOL, vocab)})
  tok = Tokenizer(models.WordLevel(table, unk_token="<pad>"))
  tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
  return tok


def _doc_counts(data, params: generated.SourceParams) -> tuple[int, int]:
  s = data.synthetic
  return (math.ceil(s.train_tokens / params.doc_tokens),
          math.ceil(s.eval_tokens / params.doc_tokens))


def _write_split(writer: storelib.ShardWriter, source: generated.Source, split: str,
                 n_docs: int, first_doc: int) -> None:
  """The split's documents (numbered from first_doc in the store) from where the writer stands:
  a resumed build starts at the document and token its finished shards end at."""
  resume_doc, resume_skip = writer.next_doc - first_doc, writer.skip_tokens
  L = source.params.doc_tokens
  if resume_doc < n_docs:
    start = max(0, resume_doc)
    done = start // generated.CHUNK_DOCS * generated.CHUNK_DOCS
    for tokens_BL, _ in generated.Generator(source, split).documents(
        n_docs, start // generated.CHUNK_DOCS):
      rows = tokens_BL[max(0, start - done):]
      first = done + tokens_BL.shape[0] - rows.shape[0]
      writer.write(split, rows.ravel(), np.full(rows.shape[0], L, np.int64), first_doc + first,
                   resume_skip if first == resume_doc else 0)
      done += tokens_BL.shape[0]
  writer.end_split(split, first_doc + n_docs)


def build(data, out: str = "", verbose: bool = True) -> storelib.TokenStore:
  """The generated corpus's store: in `out` when given, else in the cache directory under its
  parameters' hash (reused when there, finished when a build was stopped)."""
  if data.tokenizer:
    raise UserError(f"data.tokenizer={data.tokenizer!r} is for text; the generated corpus needs "
                    "none (its symbols are the tokens): leave data.tokenizer empty")
  params = source_params(data)
  params.check()
  n_train, n_eval = _doc_counts(data, params)
  tok = symbol_tokenizer(params.vocab)
  identity_text = json.dumps([_VERSION, dataclasses.asdict(params), n_train, n_eval],
                             sort_keys=True)
  content = hashlib.sha256(identity_text.encode()).hexdigest()[:16]
  folder = Path(out) if out else datalib.cache_root(data.cache_dir) / "stores" / content
  if storelib.check_folder(folder, content):     # written already: read it (no lock needed)
    return storelib.open_store(folder, tok, verbose)
  say = (lambda m: print(m, flush=True)) if verbose else None
  with runlock.waiting(folder, say):
    if not storelib.check_folder(folder, content):
      _write(data, params, tok, folder, content, n_train, n_eval, verbose)
  return storelib.open_store(folder, tok, verbose)


def _write(data, params, tok, folder: Path, content: str, n_train: int, n_eval: int,
           verbose: bool) -> None:
  if verbose:
    print(f"generating the synthetic corpus: {n_train:,} + {n_eval:,} documents of "
          f"{params.doc_tokens} tokens (seed {params.seed})", flush=True)
  source = generated.make_source(params)
  identity = {"content_sha256_16": content,
              "dtype": np.dtype(np.uint16 if params.vocab <= 2**16 else np.uint32).name,
              "shard_tokens": data.shard_tokens}
  writer = storelib.ShardWriter(folder, identity)
  if writer.resuming and verbose:
    print(f"tokenize: resuming {folder} at document {writer.next_doc:,} "
          f"({sum(len(v) for v in writer.shards.values())} shards kept)", flush=True)
  _write_split(writer, source, "train", n_train, 0)
  _write_split(writer, source, "eval", n_eval, n_train)
  entropy = generated.entropy_rate(source)
  writer.finish(tok, dict(
      source=SOURCE, tokenizer="none: the generated symbols are the tokens",
      synthetic=dataclasses.asdict(params), entropy=entropy,
      entropy_rate_nats=entropy["entropy_rate_nats"],
      n_docs_train=n_train, n_docs_eval=n_eval, n_bytes_train=None, n_bytes_eval=None,
      tokenizer_sha256_16=storelib.tokenizer_hash(tok), store_sha256_16=content,
      n_vocab=params.vocab, vocab_size_requested=params.vocab, eos_id=generated.BOS))

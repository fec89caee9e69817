"""Corpus sources read as a stream of documents, in bounded memory whatever the corpus size.

Sources of text (the `data.source` config string; "synthetic", the default, is the generated
corpus of scaling/data/generated.py, which has no text and does not come through here):
  path/to/file.txt      one text file, split into documents at blank lines (read 8 MiB at a time)
  path/to/folder, glob  every *.txt/*.md file under it (or matching it), one document per file,
                        and every *.jsonl[.xz] file, one document per line (shards of a corpus)
  path/to/file.jsonl    one document per line (also .jsonl.xz), the text in `data.text_field`
  hf:NAME[:SPLIT]       a Hugging Face `datasets` data set, streamed (a saved local directory works
                        offline)

Documents are stripped; empty ones are dropped. Only one document is held at a time, so a single
document must fit in memory (a folder's file, a JSONL record).
"""

from __future__ import annotations

import codecs
import glob as globlib
import json
import lzma
import re
from pathlib import Path
from typing import Iterator

from scaling import files
from scaling.errors import UserError

SYNTHETIC = "synthetic"
_TEXT_SUFFIXES = (".txt", ".md", ".text", ".rst")
_JSONL_SUFFIXES = (".jsonl", ".jsonl.xz")
_READ_BYTES = 8 << 20
_BLANK_LINE = re.compile(r"\n\s*\n")
# A whitespace-free run this long is not text: byte-level BPE training on it takes hours.
_LONG_RUN = re.compile(r"\S{20000,}")


def python_docs() -> list[str]:
  """Python's own documentation topics, shipped with every CPython (pydoc_data.topics): an
  out-of-distribution text set that needs no download."""
  from pydoc_data.topics import topics
  return [topics[k] for k in sorted(topics)]


def _not_utf8(path: Path, at: int | None = None) -> UserError:
  where = f" (near byte {at:,})" if at is not None else ""
  return UserError(f"{path} is not UTF-8 text{where}; convert it, e.g. with iconv -t UTF-8")


def _check_block(path: Path, raw: bytes, offset: int) -> None:
  """Every block of a text file, not just its start: another encoding is named, a NUL byte
  anywhere (binary data) is refused with its position."""
  if offset == 0:
    bad = files.other_encoding(path, raw)
    if bad:
      raise bad
  nul = raw.find(b"\x00")
  if nul >= 0:
    raise UserError(f"{path} holds a NUL byte at byte {offset + nul:,}: binary data, not text; "
                    "give a UTF-8 text file")


def _read_text(path: Path) -> str:
  raw = path.read_bytes()
  _check_block(path, raw, 0)
  try:
    return raw.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    raise _not_utf8(path, e.start) from None


def _text_file_documents(path: Path) -> Iterator[str]:
  """The blank-line-separated documents of one text file, read a block at a time: the piece after
  a block's last separator is carried into the next block, so the documents are those of a split
  of the whole text (after stripping and dropping empty ones). Every block is checked."""
  decoder = codecs.getincrementaldecoder("utf-8-sig")()
  carry, offset = "", 0
  with open(path, "rb") as f:
    while True:
      raw = f.read(_READ_BYTES)
      _check_block(path, raw, offset)
      try:
        text = decoder.decode(raw, final=not raw)
      except UnicodeDecodeError as e:
        raise _not_utf8(path, offset + e.start) from None
      offset += len(raw)
      pieces = _BLANK_LINE.split(carry + text)
      carry = pieces.pop()
      yield from pieces
      if not raw:
        break
  yield carry


def _text_of(value, where: str, text_field: str) -> str:
  """A record's text, which must be a string (not null, a number or a list)."""
  if not isinstance(value, str):
    kind = "null" if value is None else f"a {type(value).__name__}"
    raise UserError(f"{where}: the field {text_field!r} is {kind}, not a string; fix or drop "
                    "that record (or set data.text_field to the text's field)")
  return value


def _jsonl_documents(path: Path, text_field: str) -> Iterator[str]:
  """One document per line, each line decoded and parsed on its own (errors name the line)."""
  opener = lzma.open if path.suffix == ".xz" else open
  try:
    with opener(path, "rb") as f:
      for i, raw in enumerate(f, 1):
        if i == 1:
          bad = files.other_encoding(path, raw)
          if bad:
            raise bad
          raw = raw.removeprefix(codecs.BOM_UTF8)
        try:
          line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
          raise UserError(f"{path}:{i} is not UTF-8 text (byte {e.start + 1} of the line); "
                          "convert the file, e.g. with iconv -t UTF-8") from None
        if line.strip():
          yield _jsonl_record(line, f"{path}:{i}", text_field)
  except (lzma.LZMAError, EOFError) as e:
    raise UserError(f"{path} is not a complete xz file ({e}); check it with xz -t") from None


def _jsonl_record(line: str, where: str, text_field: str) -> str:
  try:
    record = json.loads(line)
  except json.JSONDecodeError:
    raise UserError(f"{where} is not valid JSON; each line must be one JSON object") from None
  if not isinstance(record, dict) or text_field not in record:
    raise UserError(f"{where} has no field {text_field!r}; set data.text_field")
  return _text_of(record[text_field], where, text_field)


def _hf_documents(spec: str, text_field: str) -> Iterator[str]:
  """A Hugging Face data set, streamed (`streaming=True`), or a saved one read row by row."""
  try:
    import datasets  # optional extra: pip install 'scaling[hf]'
  except ImportError:
    raise UserError("a hf: source needs the `datasets` package: pip install 'scaling[hf]'") from None
  name, _, split = spec[len("hf:"):].partition(":")
  if Path(name).is_dir():
    ds = datasets.load_from_disk(name)
    if isinstance(ds, datasets.DatasetDict):
      ds = ds[split or "train"]
  else:
    ds = datasets.load_dataset(name, split=split or "train", streaming=True)
  columns = ds.column_names
  if columns is not None and text_field not in columns:
    raise UserError(f"{spec} has no column {text_field!r} (columns: {columns}); "
                    "set data.text_field")
  for i, row in enumerate(ds):
    if text_field not in row:
      raise UserError(f"{spec} row {i} has no column {text_field!r}; set data.text_field")
    yield _text_of(row[text_field], f"{spec} row {i}", text_field)


def _is_jsonl(path: Path) -> bool:
  return path.name.endswith(_JSONL_SUFFIXES)


def _files_of(source: str) -> list[Path]:
  path = Path(source).expanduser()
  if path.is_dir():
    found = sorted(p for p in path.rglob("*")
                   if p.is_file() and (p.suffix in _TEXT_SUFFIXES or _is_jsonl(p)))
    if not found:
      raise UserError(f"folder {path} holds no text or JSONL files "
                      f"({', '.join(_TEXT_SUFFIXES + _JSONL_SUFFIXES)})")
    return found
  found = sorted(Path(p) for p in globlib.glob(str(path), recursive=True) if Path(p).is_file())
  if not found:
    raise UserError(f"corpus {source!r} does not exist (no file, folder or glob match)")
  return found


def _raw_documents(source: str, text_field: str) -> Iterator[str]:
  if source == SYNTHETIC:
    raise UserError("the synthetic corpus is generated token by token and has no text "
                    "documents; give a text source here (a file, folder, glob, JSONL or hf:NAME)")
  if source == "embedded":
    raise UserError("the embedded TinyStories sample is no longer shipped: use the generated "
                    "default (data.source=synthetic) or give the text yourself (a file, folder, "
                    "glob, JSONL or hf:NAME)")
  if source == "builtin:python-docs":
    yield from python_docs()
  elif source.startswith("hf:"):
    yield from _hf_documents(source, text_field)
  elif Path(source).expanduser().is_file():
    path = Path(source).expanduser()
    if _is_jsonl(path):
      yield from _jsonl_documents(path, text_field)
    else:
      yield from _text_file_documents(path)
  else:   # a folder or glob: JSONL files a document a line, text files a document each
    for path in _files_of(source):
      if _is_jsonl(path):
        yield from _jsonl_documents(path, text_field)
      else:
        yield _read_text(path)


def iter_documents(source: str, text_field: str = "text") -> Iterator[str]:
  """The non-empty documents of a source, stripped, one at a time; raises UserError for bad
  input (also when the source holds no text at all)."""
  if not source:
    raise UserError("data.source is empty; give 'synthetic', a file, a folder, a glob or hf:NAME")
  n = 0
  for raw in _raw_documents(source, text_field):
    doc = raw.strip()
    if not doc:
      continue
    run = _LONG_RUN.search(doc)
    if run:
      raise UserError(f"corpus {source!r}: document {n} holds {len(run.group()):,} characters "
                      "without whitespace, which is not natural text (minified or encoded data?) "
                      "and would stall tokenizer training; split or remove it")
    n += 1
    yield doc
  if not n:
    raise UserError(f"corpus {source!r} is empty: it holds no text")


def load_documents(source: str, text_field: str = "text") -> list[str]:
  """All documents of a (small) source in memory: extra evaluation sets, tests."""
  return list(iter_documents(source, text_field))


def n_held_out(n_docs: int, eval_fraction: float) -> int:
  """How many documents, the last ones, are held out: `eval_fraction` of them, at least one."""
  if not 0.0 < eval_fraction < 1.0:
    raise UserError(f"data.eval_fraction must lie in (0, 1), got {eval_fraction}")
  if n_docs < 2:
    raise UserError(f"the corpus has {n_docs} document; a held-out split needs at least 2")
  return min(n_docs - 1, max(1, round(n_docs * eval_fraction)))


def split_documents(docs: list[str], eval_fraction: float) -> tuple[list[str], list[str]]:
  """Last `eval_fraction` of the documents (at least one) are held out."""
  n_eval = n_held_out(len(docs), eval_fraction)
  return docs[:-n_eval], docs[-n_eval:]

"""The package's shape: no import cycle between its modules (read from the source with ast)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "scaling"
# The package and its stage folders: their __init__ files hold a docstring only.
PACKAGES = {"scaling"} | {f"scaling.{p.name}" for p in PACKAGE.iterdir()
                          if (p / "__init__.py").is_file()}


def _module_name(path: Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
  """Modules of the package that `path` imports, at any depth of its code (lazy imports too)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    else:
      continue
    found |= {n for n in names if n in modules}
  return found - PACKAGES


def import_graph() -> dict[str, set[str]]:
  files = sorted(PACKAGE.rglob("*.py"))
  modules = {_module_name(f) for f in files}
  return {_module_name(f): _imports(f, modules) - {_module_name(f)} for f in files}


def find_cycle(graph: dict[str, set[str]]):
  """A list of modules forming a cycle, or None (depth-first search with colours)."""
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state:
        cycle = visit(nxt)
        if cycle:
          return cycle
    state[node] = "done"
    stack.pop()
    return None

  for node in sorted(graph):
    if node not in state:
      cycle = visit(node)
      if cycle:
        return cycle
  return None


def test_the_cycle_finder_finds_a_planted_cycle():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_in_the_package():
  graph = import_graph()
  assert "scaling.train.loop" in graph and "scaling.train.step" in graph["scaling.train.loop"]
  assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_bench_builds_on_the_step_not_the_trainer():
  graph = import_graph()
  assert "scaling.train.loop" not in graph["scaling.train.throughput"]
  assert "scaling.train.throughput" not in graph["scaling.train.loop"]


MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 90
# A parser's option table is a table, long by nature.
TABLES = {("scaling/cli_args.py", "build_parser")}


def long_parts(root: Path = PACKAGE) -> list[str]:
  """Modules over MAX_MODULE_LINES lines and functions over MAX_FUNCTION_LINES, by name."""
  found = []
  for path in sorted(root.rglob("*.py")):
    text = path.read_text()
    name = str(path.relative_to(root.parent))
    if text.count("\n") > MAX_MODULE_LINES:
      found.append(f"{name}: {text.count(chr(10))} lines")
    for node in ast.walk(ast.parse(text)):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        length = node.end_lineno - node.lineno + 1
        if length > MAX_FUNCTION_LINES and (name, node.name) not in TABLES:
          found.append(f"{name}: {node.name} is {length} lines")
  return found


def test_the_length_check_finds_a_long_module_and_a_long_function(tmp_path):
  pkg = tmp_path / "scaling"
  pkg.mkdir()
  (pkg / "short.py").write_text("def f():\n  return 1\n")
  (pkg / "long.py").write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
  (pkg / "fn.py").write_text("def g():\n" + "  y = 1\n" * MAX_FUNCTION_LINES)
  assert long_parts(pkg) == [f"scaling/fn.py: g is {MAX_FUNCTION_LINES + 1} lines",
                             f"scaling/long.py: {MAX_MODULE_LINES + 1} lines"]


def test_no_module_or_function_too_long_to_read():
  assert long_parts() == []


def test_the_model_imports_no_other_stage():
  """The model is a pure function of its config: it reads no store, cache or machine."""
  graph = import_graph()
  model = [m for m in graph if m.startswith("scaling.model.")]
  assert "scaling.model.transformer" in model and "scaling.model.kernels" in model
  for m in model:
    outside = {d for d in graph[m] if not d.startswith("scaling.model.") and d != "scaling.errors"}
    assert not outside, f"{m} imports {sorted(outside)}"


def test_tests_mirror_the_stage_folders():
  tests = PACKAGE.parent / "tests"
  stages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
  mirrored = sorted(p.name for p in tests.iterdir()
                    if p.is_dir() and any(p.glob("test_*.py")) and p.name != "faults")
  assert mirrored == stages
  # One basename per test module across folders (pytest imports them by basename).
  names = [p.name for p in tests.rglob("test_*.py")]
  assert len(names) == len(set(names))


def test_below_the_command_line_stages_read_the_typed_spec():
  """The ConfigDict is made (config/load.py, config/defaults.py) and parsed (config/spec.py) at
  the edge; the stages that train, fit and report never import its makers."""
  graph = import_graph()
  makers = {"scaling.config.load", "scaling.config.defaults"}
  stages = ("data", "model", "train", "laws", "report")
  for m, deps in graph.items():
    if m.split(".")[1:2] and m.split(".")[1] in stages:
      assert not deps & makers, f"{m} imports {sorted(deps & makers)}"
  for stage in stages:
    for path in (PACKAGE / stage).rglob("*.py"):
      for node in ast.walk(ast.parse(path.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        assert not any(n.split(".")[0] == "ml_collections" for n in names), path

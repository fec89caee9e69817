"""The package's shape: no import cycle between its modules (read from the source with ast)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "scaling"


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
  return found - {"scaling", "scaling.laws"}


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
  assert "scaling.train" in graph and "scaling.step" in graph["scaling.train"]
  assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_bench_builds_on_the_step_not_the_trainer():
  graph = import_graph()
  assert "scaling.train" not in graph["scaling.bench"]
  assert "scaling.bench" not in graph["scaling.train"]

"""The Colab notebooks run top to bottom against this checkout, offline, and show their results."""

import os
import time

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO


def _execute(name, tmp_path):
  nb = nbformat.read(REPO / "colab" / f"{name}.ipynb", as_version=4)
  env_before = dict(os.environ)
  # The kernel inherits this environment: one CPU device, this checkout importable.
  os.environ["XLA_FLAGS"] = ""
  os.environ["PYTHONPATH"] = str(REPO)
  try:
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
  finally:
    os.environ.clear()
    os.environ.update(env_before)
  return nb


def _outputs(nb):
  text, images = [], 0
  for cell in nb.cells:
    for out in cell.get("outputs", []):
      if out.get("output_type") == "stream":
        text.append(out["text"])
      data = out.get("data", {})
      text.append(data.get("text/plain", ""))
      images += "image/png" in data
  return "\n".join(text), images


@pytest.mark.slow   # 52 s; the Colab notebook end to end
def test_quickstart_notebook(tmp_path):
  t0 = time.time()
  nb = _execute("quickstart", tmp_path)
  text, images = _outputs(nb)
  assert "trained 4 models" in text
  assert "alpha_N = " in text and "predicted from the others" in text
  assert images >= 3                                    # L(N), curves, B_simple … inline
  print(f"quickstart notebook: {time.time() - t0:.0f} s")


@pytest.mark.slow   # 33 s; moved out of the default suite to keep it under 10 minutes
def test_laws_notebook(tmp_path):
  t0 = time.time()
  nb = _execute("laws", tmp_path)
  text, images = _outputs(nb)
  assert "alpha = " in text and "95% interval" in text
  assert "L(N=7e+10, D=1.4e+12)" in text
  assert images == 1
  print(f"laws notebook: {time.time() - t0:.0f} s")

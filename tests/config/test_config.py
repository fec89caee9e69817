"""Config files and command-line overrides."""

import pytest

from scaling.config.load import apply_overrides, load_config_file
from scaling.errors import UserError


def test_overrides_typed():
  cfg = load_config_file("configs/tiny.py")
  apply_overrides(cfg, ["--config.model.d_model=256", "config.train.peak_lr=1e-3",
                        "train.tokens=1000", "model.tie_embeddings=false", "data.source=x.txt"])
  assert cfg.model.d_model == 256 and cfg.train.peak_lr == 1e-3 and cfg.train.tokens == 1000
  assert cfg.model.tie_embeddings is False and cfg.data.source == "x.txt"


@pytest.mark.parametrize("override, message", [
    ("model.d_modl=3", "unknown config field"),
    ("nosuch.field=3", "unknown config field"),
    ("model.d_model=wide", "model.d_model"),
    ("model.d_model=1.5", "model.d_model"),
    ("model.d_model", "no '='"),
])
def test_bad_overrides(override, message):
  with pytest.raises(UserError, match=message):
    apply_overrides(load_config_file("configs/tiny.py"), [override])


def test_missing_config_file():
  with pytest.raises(UserError, match="does not exist"):
    load_config_file("configs/nope.py")

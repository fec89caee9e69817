"""The typed spec: the one definition of every field, its default, choices and ranges."""

import dataclasses
import json

import pytest

from scaling.config import spec
from scaling.config.defaults import base_config
from scaling.config.load import apply_overrides, load_config_file
from scaling.errors import UserError


def test_the_default_config_parses_back_to_the_spec_defaults():
  got = spec.validate(base_config())
  # By hand: the generated corpus's documents default to one context (model.n_ctx = 128).
  assert got.data.synthetic.doc_tokens == 128
  want = dataclasses.replace(spec.RunSpec(), data=dataclasses.replace(
      spec.RunSpec().data, synthetic=dataclasses.replace(spec.SyntheticSpec(), doc_tokens=128)))
  assert got == want
  # The optional top-level fields are not in the default config, so not in a run's config.json.
  assert not set(spec.OPTIONAL_TOP) & set(base_config().keys())
  assert json.loads(got.config_json) == base_config().to_dict()


def test_a_config_file_and_overrides_reach_the_typed_sections():
  cfg = apply_overrides(load_config_file("configs/tiny.py"),
                        ["train.schedule=wsd", "model.weight_grad=plain", "log.print_every=7",
                         "distributed.timeout_s=30"])
  got = spec.validate(cfg)
  assert (got.train.schedule, got.model.weight_grad) == ("wsd", "plain")
  assert (got.log.print_every, got.distributed.timeout_s) == (7, 30)
  assert isinstance(got.model, spec.ModelSpec) and got.model.d_model == cfg.model.d_model


@pytest.mark.parametrize("override, message", [
    ("train.schedule=cos", "train.schedule must be one of cosine, wsd, got 'cos'"),
    ("model.attention=flash", "model.attention must be one of auto, explicit, xla, cudnn"),
    ("model.weight_grad=fast", "model.weight_grad must be one of auto, plain, transposed"),
    ("data.sampling=random", "data.sampling must be one of epochs, uniform"),
    ("train.b2=1.5", r"train.b2 must be in \[0, 1\)"),
])
def test_a_value_outside_its_choices_or_range_is_one_line(override, message):
  cfg = apply_overrides(load_config_file("configs/tiny.py"), [override])
  with pytest.raises(UserError, match=message):
    spec.validate(cfg)


def test_resumable_fields_are_named_by_the_spec():
  # By hand, the fields a run may resume under with another value.
  assert set(spec.resumable_fields()) == {
      "run_dir", "compilation_cache", "model.weight_grad", "data.cache_dir",
      "data.loader_threads", "data.shard_tokens", "train.peak_lr", "train.grad_clip",
      "train.skip_batches", "train.patience", "log.print_every", "log.tensorboard", "log.wandb",
      "log.wandb_project"}


def test_spec_sections_take_keywords_only():
  with pytest.raises(TypeError):
    spec.GnsSpec(True, 1, 0.9)      # positional fields would bind silently to the wrong ones

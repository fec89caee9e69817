"""The default run configuration as the ConfigDict that files under configs/ start from and
change: built from the typed spec's defaults (scaling/config/spec.py), where each field is
declared once with what it means."""

import ml_collections

from scaling.config import spec


def base_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(spec.defaults())

"""scaling: measure, fit and check the scaling laws of transformer language models."""

__version__ = "0.1.0"

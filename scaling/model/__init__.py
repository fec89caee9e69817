"""The decoder-only transformer: a pure function of its ModelConfig, with exact N and FLOP
counts."""

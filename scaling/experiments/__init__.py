"""Sweeps of runs: ladders, isoFLOP families, batch sweeps, branched critical batches."""

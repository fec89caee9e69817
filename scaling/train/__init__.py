"""One training run: the step, optimizer, noise scale, the loop and every file of its run
directory."""

"""The design stage: measure the corpus and machine, plan an isoFLOP experiment into
design.json."""

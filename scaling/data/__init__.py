"""The corpus and the tokenize stage: sources, the generated corpus, BPE, the token store,
batches."""

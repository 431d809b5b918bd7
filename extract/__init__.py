"""extract: MMLU prompts through a causal LM, last-token hidden states of every layer into HDF5."""

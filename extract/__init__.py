"""extract: any multiple-choice task's prompts (``landscape.tasks``: MMLU and the built-in tasks,
or a task given as data), 0-shot and k-shot, through a causal LM; the last-token hidden state of
every layer into HDF5 (``extract.icl``, ``extract.conditions``), and LoRA fine-tunes with their
prequential code (``extract.finetune``)."""

"""landscape: the representation landscape of few-shot learning and fine-tuning in language models.

Read a run::

    import landscape
    landscape.conditions("runs/default")                 # ['0shot', '5shot', 'sft']
    layer = landscape.load_layer("runs/default", "5shot", 12)
    layer.X, layer.groups, layer.answers                 # (N, d) float32; {field: (N,)}; (N,)
"""

from landscape.reader import Layer, conditions, examples, info, load_layer
from landscape.store import SCHEMA_VERSION, SchemaError

__version__ = "0.1.0"
__all__ = ["SCHEMA_VERSION", "Layer", "SchemaError", "conditions", "examples", "info", "load_layer"]

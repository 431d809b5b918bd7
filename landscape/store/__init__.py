"""The store: one module per file of a run, each the only code that spells paths inside it.

- ``landscape.store.layout``: the run folder's names, the schema version, ``SchemaError``, and
  the encoding of attributes that every file shares;
- ``landscape.store.hidden``: ``RUN/hidden.h5``, its examples, partition and conditions (states,
  outputs); ``landscape.store.readout``: its norm and head parameters; ``landscape.store.encoding``:
  how the states are kept (dtype); ``landscape.store.run_file``: its top groups' names, the version
  check and a condition's group, which both of the first two read;
- ``landscape.store.edl``: the EDL records inside ``RUN/hidden.h5``;
- ``landscape.store.shards``: ``RUN/shards/``, one file per rank of a multi-process extraction;
- ``landscape.store.analysis``: ``RUN/analysis.h5``, every result of ``landscape analyze``;
- ``landscape.store.maps``: ``RUN/maps.h5``, the report's cache of 2-D maps.

Callers name the file they touch: ``store.hidden.read_layer(f, "0shot", 5)``,
``store.analysis.read_result(f, path)``. docs/schema.md is these modules' layouts, generated
(``python -m landscape.store``) and checked against them by tests/test_docs.py.
"""

from landscape.store import analysis, edl, encoding, hidden, layout, maps, readout, shards
from landscape.store.layout import (
    ANALYSIS_FILE,
    HIDDEN_FILE,
    MAPS_FILE,
    REPORT_DIR,
    SCHEMA_VERSION,
    SHARDS_DIR,
    SchemaError,
)

__all__ = [
    "ANALYSIS_FILE",
    "HIDDEN_FILE",
    "MAPS_FILE",
    "REPORT_DIR",
    "SCHEMA_VERSION",
    "SHARDS_DIR",
    "SchemaError",
    "analysis",
    "edl",
    "encoding",
    "hidden",
    "layout",
    "maps",
    "readout",
    "shards",
]

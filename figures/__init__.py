"""figures: the offline, interactive report of a run (``landscape report RUN``)."""

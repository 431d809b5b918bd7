"""analyses: per condition x layer geometry of a run, comparisons between conditions, tidy tables."""

"""The settings of a report (``ReportConfig``), below the modules that use them: ``figures.report``
(the page) and ``figures.map_section`` (the 2-D maps); also importable from ``figures.report``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReportConfig:
    map_method: str = "umap"  # umap | pca (umap falls back to pca when it is not installed)
    map_layers: tuple[int, ...] = ()  # () = 8 layers spread over the depth
    map_neighbors: int = 15
    seed: int = 0
    png: str = "auto"  # auto (when kaleido finds a browser) | yes | no
    task_data: str | None = None  # the task's data file (question texts), when not where the run found it

    def validate(self) -> None:
        if self.map_method not in ("umap", "pca"):
            raise ValueError(f"unknown map method {self.map_method!r}: use umap or pca")
        if self.png not in ("auto", "yes", "no"):
            raise ValueError(f"png must be auto, yes or no, got {self.png!r}")
        if self.map_neighbors < 2:
            raise ValueError(f"map_neighbors must be >= 2, got {self.map_neighbors}")

"""What the benchmarks measure in a process: its resident memory now and at its peak, its CPU
time, and the highest RSS while each named part of a run is running (a sampling thread)."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class RssSampler:
    """Highest RSS seen (MiB) while each named part runs (``running``: the parts now running,
    outermost first; a part's high includes its nested parts'), sampled every ``interval`` s by a
    thread (parts that hold the GIL throughout are seen at their start and end only)."""

    def __init__(self, interval: float = 0.005):
        import threading

        self.running, self.high, self.interval = [], {}, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.see()

    def see(self) -> None:
        now = rss_mib()
        for part in tuple(self.running):
            self.high[part] = max(self.high.get(part, 0.0), now)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def timed(
    parts: dict[str, float], sampler: RssSampler, name: str, fn: Callable, key: Callable | None = None
) -> Callable:
    """``fn`` that adds its seconds to ``parts[label]`` and tells ``sampler`` it runs (label:
    ``name``, or ``key(*args, **kwargs)``); nested parts count in both."""

    def wrapper(*args, **kwargs):
        label = key(*args, **kwargs) if key else name
        sampler.running.append(label)
        sampler.see()
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            parts[label] = parts.get(label, 0.0) + time.perf_counter() - start
            sampler.see()
            sampler.running.pop()

    return wrapper


def instrument_layer(parts: dict[str, float], sampler: RssSampler, maxk: int = 100) -> None:
    """Wrap the parts of ``analyze_layer`` with timers (seconds summed into ``parts``) and tell
    ``sampler`` which part runs."""
    import analyses.layer as layer
    from landscape import geometry

    def timed_part(name, fn, key=None):
        return timed(parts, sampler, name, fn, key)

    def knn_key(X, k=maxk, *args, **kwargs):
        return f"knn(maxk={k})"

    if hasattr(layer, "distinct_gram"):  # the layer's float64 Gram (landscape.gram), before any graph
        layer.distinct_gram = timed_part("gram", layer.distinct_gram)
    if hasattr(layer, "knn_graph"):
        layer.knn_graph = timed_part("knn", layer.knn_graph, knn_key)
    if hasattr(layer, "estimate_ids"):
        layer.estimate_ids = timed_part("ids", layer.estimate_ids)
    for name, label in (
        ("intrinsic_dimension_gride", "id"),
        ("intrinsic_dimension_2nn", "id"),
        ("density_peaks", "adp"),
        ("label_overlap", "label_overlap"),
        ("peak_tree", "peak_tree"),
        ("ari", "ari"),
        ("cluster_purity", "purity"),
    ):
        if hasattr(geometry, name):
            setattr(geometry, name, timed_part(label, getattr(geometry, name)))

"""Where the analysis's independent tasks run: in this process, in local worker processes, or on Ray.

Every task is a top-level function and its arguments (picklable), so the three places give the
same numbers; results come back in completion order and only the caller writes files. At most
``window`` tasks are in flight, so a task's inputs (read by the caller from analysis.h5) are
built only when a worker is about to be free: memory stays bounded however many tasks there are.

Example:
    >>> with Workers(jobs=1) as workers:
    ...     sorted(workers.map([("a", divmod, (7, 2)), ("b", divmod, (9, 4))]))
    [('a', (3, 1)), ('b', (2, 1))]
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)
Task = tuple[K, Callable[..., Any], tuple]  # (key, fn, args)


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # one core per worker: the workers share the machine's cores


def _call(fn: Callable[..., Any], args: tuple) -> Any:
    """A task on a Ray worker (one CPU)."""
    _one_thread()
    return fn(*args)


class Workers:
    """``jobs`` = 1 and no ``ray``: here. ``jobs`` > 1: that many local processes. ``ray``:
    ``"local"`` starts a Ray of ``jobs`` CPUs on this machine (``ray.init(num_cpus=jobs)``), any
    other value is the address of a running cluster (``"auto"``, ``"ray://head:10001"``); a Ray
    already initialised by the caller is used as it is."""

    def __init__(self, jobs: int = 1, ray: str | None = None):
        self.jobs, self.ray_address = jobs, ray
        self._pool: ProcessPoolExecutor | None = None
        self._ray: Any = None  # the ray module, once entered with ray=
        self._started_ray = False
        self._gpus = 0
        self.window = 1

    def __enter__(self) -> Workers:
        if self.ray_address is not None:
            try:
                import ray
            except ImportError as error:
                raise ValueError(f"--ray needs the ray package ({error}): pip install ray") from error
            if not ray.is_initialized():
                if self.ray_address == "local":
                    ray.init(num_cpus=self.jobs, include_dashboard=False, configure_logging=False)
                else:
                    ray.init(address=self.ray_address, include_dashboard=False, configure_logging=False)
                self._started_ray = True
            self._ray = ray
            resources = ray.cluster_resources()
            self._gpus = int(resources.get("GPU", 0))
            self.window = 2 * max(1, int(resources.get("CPU", 1)))
        elif self.jobs > 1:
            # spawn, not fork: the parent may hold torch threads and open HDF5 handles.
            self._pool = ProcessPoolExecutor(
                max_workers=self.jobs, mp_context=get_context("spawn"), initializer=_one_thread
            )
            self.window = 2 * self.jobs
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        if self._started_ray:
            self._ray.shutdown()

    def map(self, tasks: Iterable[Task[K]], *, gpu: bool = False) -> Iterator[tuple[K, Any]]:
        """Yield (key, fn(*args)) of each (key, fn, args), in completion order. ``gpu``: on a Ray
        cluster with GPUs, each task asks for one (the kNN graph then runs there)."""
        tasks = iter(tasks)
        if self._pool is None and self._ray is None:
            for key, fn, args in tasks:
                yield key, fn(*args)
            return
        submit = self._ray_submit(gpu) if self._ray is not None else self._pool_submit
        pending: dict[Any, K] = {}

        def refill() -> None:
            for key, fn, args in tasks:
                pending[submit(fn, args)] = key
                if len(pending) >= self.window:
                    return

        refill()
        while pending:
            for handle in self._ready(pending):
                key = pending.pop(handle)
                result = self._result(handle)
                refill()
                yield key, result

    def _pool_submit(self, fn: Callable, args: tuple):
        assert self._pool is not None  # map's callers: entered with jobs > 1
        return self._pool.submit(fn, *args)

    def _ray_submit(self, gpu: bool):
        remote = self._ray.remote(num_cpus=1, num_gpus=1 if gpu and self._gpus else 0, max_retries=2)(_call)
        return remote.remote

    def _ready(self, pending: dict) -> list:
        if self._ray is not None:
            ready, _ = self._ray.wait(list(pending), num_returns=1)
            return ready
        done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
        return list(done)

    def _result(self, handle) -> Any:
        if self._ray is None:
            return handle.result()
        try:
            return self._ray.get(handle)
        except self._ray.exceptions.RayTaskError as error:  # our one-line errors stay one line
            if isinstance(error.cause, ValueError):
                raise error.cause from None
            raise

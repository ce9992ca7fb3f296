"""Where matches run: joblib's loky processes on this machine, or a dask cluster.

Both are joblib backends, so the runner has one loop for both: it hands joblib the work units
and gets each one's records back, in the order they finish, in the client process, which
alone writes the results directory (workers need no shared filesystem).

* ``loky`` (default): ``--jobs`` worker processes on this machine.
* ``dask``: joblib's dask backend over ``dask.distributed`` (the optional extra
  ``recip-tourney[dask]``). With ``--scheduler tcp://HOST:PORT`` the units go to an existing
  cluster, whose workers must have the same recip-tourney installed; without one a
  ``LocalCluster`` of ``--jobs`` single-threaded worker processes is started. The scheduler
  reschedules the unit of a worker that dies on another worker, so a lost worker costs only
  the match it was playing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from joblib import Parallel, delayed, parallel_config

from recip_tourney.errors import UserError

BACKENDS = ("loky", "dask")
DASK_EXTRA = "pip install 'recip-tourney[dask]'"
#: Seconds to wait for a scheduler to answer and, on a fresh cluster, for a first worker.
CONNECT_TIMEOUT_S = 30


@dataclass
class Execution:
    """A started backend: ``map`` runs a function over items, yielding results as they end.

    Attributes
    ----------
    backend : str
        ``loky`` or ``dask``.
    workers : int
        Units that run at once (loky: processes; dask: the cluster's worker threads).
    where : str
        Where the units run, for the run's notice and manifest.
    """

    backend: str
    workers: int
    where: str
    _parallel: Callable[[], Parallel]

    def map(self, function: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        """``function(item)`` for every item, in the order they finish."""
        return self._parallel()(delayed(function)(item) for item in items)


def dask_modules() -> tuple[Any, Any]:
    """``(Client, LocalCluster)`` from ``dask.distributed``; UserError without the extra."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UserError(
            f"--backend dask needs dask.distributed, which is not installed: {DASK_EXTRA}"
        ) from None
    return Client, LocalCluster


@contextlib.contextmanager
def _dask(jobs: int, scheduler: str | None) -> Iterator[Execution]:
    client_cls, cluster_cls = dask_modules()
    with contextlib.ExitStack() as stack:
        if scheduler:
            try:
                client = stack.enter_context(client_cls(scheduler, timeout=CONNECT_TIMEOUT_S))
            except OSError as exc:
                raise UserError(f"cannot reach the dask scheduler at {scheduler}: {exc}") from None
            where = f"the dask cluster at {scheduler}"
        else:
            cluster = stack.enter_context(cluster_cls(
                n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=":0"))
            client = stack.enter_context(client_cls(cluster))
            where = f"a local dask cluster of {jobs} workers"
        try:
            client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise UserError(f"no dask worker joined {where} within {CONNECT_TIMEOUT_S} s; "
                            "start workers with `dask worker ADDRESS --nthreads 1`") from None
        workers = max(1, sum(client.nthreads().values()))

        def parallel() -> Parallel:
            # batch_size 1: a lost worker costs one unit, never a batch of them
            return Parallel(n_jobs=-1, batch_size=1, return_as="generator_unordered")

        backend = parallel_config(backend="dask", client=client,
                                  wait_for_workers_timeout=CONNECT_TIMEOUT_S)
        with backend:
            yield Execution("dask", workers, where, parallel)


@contextlib.contextmanager
def _loky(jobs: int) -> Iterator[Execution]:
    def parallel() -> Parallel:
        return Parallel(n_jobs=jobs, return_as="generator_unordered")

    where = "this process" if jobs == 1 else f"{jobs} loky worker processes"
    yield Execution("loky", jobs, where, parallel)


def execution(backend: str, jobs: int, scheduler: str | None = None
              ) -> contextlib.AbstractContextManager[Execution]:
    """Start ``backend`` for the duration of a ``with`` block.

    Parameters
    ----------
    backend : {"loky", "dask"}
    jobs : int
        loky: worker processes; dask without a scheduler: local worker processes.
    scheduler : str, optional
        dask only: address of a running scheduler (``tcp://HOST:PORT``).
    """
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; valid choices: {', '.join(BACKENDS)}")
    if scheduler and backend != "dask":
        raise UserError("--scheduler is an address of a dask scheduler: add --backend dask")
    return _dask(jobs, scheduler) if backend == "dask" else _loky(jobs)

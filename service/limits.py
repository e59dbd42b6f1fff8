"""Work budgets shared by the native and OSRM routes: the cells one matrix may ask for, and
the cells all matrices of a process may be computing at once."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from nareta.errors import TooBigError
from service.config import Settings
from service.errors import ServiceError


def check_matrix_work(origins: int, destinations: int, settings: Settings) -> None:
    """Refuse a matrix whose ``origins x destinations`` cells exceed
    ``NARETA_MAX_MATRIX_CELLS`` (413 ``TooBig``; OSRM routes: 400 ``TooBig``).

    ``NARETA_MAX_MATRIX_SIZE`` bounds each side; this bounds their product, the work one
    request may ask for (one model run per origin, one read-out per cell)."""
    cells = origins * destinations
    if cells > settings.max_matrix_cells:
        raise TooBigError(f"{origins} origins x {destinations} destinations = {cells} cells; "
                          f"at most {settings.max_matrix_cells} cells per request are allowed")


class MatrixWorkBudget:
    """The matrix cells one process computes at once (``NARETA_MAX_MATRIX_WORK_CELLS``).

    The in-flight limit counts requests; a 100 x 100 matrix is ~10,000 times the work of an
    ETA, and 48 of them at once took 20-25 s each and lifted RSS from 0.44 to 1.09 GB for
    good. A matrix waits (in its worker thread) at most ``timeout_s`` for its cells to fit,
    else it is answered 503 ``Overloaded`` with ``Retry-After``."""

    def __init__(self, capacity_cells: int, *, retry_after_s: int = 1):
        self.capacity = capacity_cells
        self.used = 0
        self.retry_after_s = retry_after_s
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def hold(self, cells: int, *, timeout_s: float) -> Iterator[None]:
        cells = min(cells, self.capacity)  # one request alone always fits
        with self._changed:
            if not self._changed.wait_for(lambda: self.used + cells <= self.capacity,
                                          timeout=timeout_s):
                raise ServiceError(503, "Overloaded",
                                   f"this server is computing {self.used} matrix cells (at "
                                   f"most {self.capacity} at once); retry after the "
                                   "Retry-After seconds",
                                   headers={"Retry-After": str(self.retry_after_s)})
            self.used += cells
        try:
            yield
        finally:
            with self._changed:
                self.used -= cells
                self._changed.notify_all()

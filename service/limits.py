"""Per-request work budgets shared by the native and OSRM routes."""

from __future__ import annotations

from nareta.errors import TooBigError
from service.config import Settings


def check_matrix_work(origins: int, destinations: int, settings: Settings) -> None:
    """Refuse a matrix whose ``origins x destinations`` cells exceed
    ``NARETA_MAX_MATRIX_CELLS`` (413 ``TooBig``; OSRM routes: 400 ``TooBig``).

    ``NARETA_MAX_MATRIX_SIZE`` bounds each side; this bounds their product, the work one
    request may ask for (one model run per origin, one read-out per cell)."""
    cells = origins * destinations
    if cells > settings.max_matrix_cells:
        raise TooBigError(f"{origins} origins x {destinations} destinations = {cells} cells; "
                          f"at most {settings.max_matrix_cells} cells per request are allowed")

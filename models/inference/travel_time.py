"""The interface between the Predictor and whatever produces travel times.

A :class:`TravelTimeModel` answers, for a batch of origin nodes and a departure time, the
travel time from each origin to every node and the segment by which each node is reached
(a shortest-path tree). The learned ETA model (processor + encoder/decoder) and the
baselines implement it, so the HTTP service and batch scoring use one code path.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class OriginRun:
    """Travel times from a batch of origins to every node (node mode) or to the end of every
    segment (turn mode, where origins are segments too)."""

    origins: np.ndarray  # [B] int64 origin node (turn mode: segment) indices
    node_time_s: np.ndarray  # [B, K] float64 seconds from origin; inf where unreachable
    parent_segment: np.ndarray  # [B, K] int64 segment reaching each node (turn mode: the
    # previous segment); -1 at the origin and where unreached
    #: [B, K] bool, for runs restricted to a corridor: which times (and which parents) are
    #: proven equal to the whole graph's (models.corridor); None: all of them
    exact_time: np.ndarray | None = None
    exact_parent: np.ndarray | None = None
    #: for runs that answered only their targets, instead of all of the above (then
    #: ``node_time_s`` is ``[B, 0]``): per origin the answered keys (exact) with their
    #: seconds and metres along the tree, and the (key, parent) pairs proven on the paths
    #: back from them: ``(keys, seconds, metres, path_keys, path_parents)``
    answers: list[tuple[np.ndarray, ...]] | None = None


class TravelTimeModel(Protocol):
    """What the Predictor needs from a model: its answers (the methods) and what it can do
    (the capability attributes, declared by every model rather than guessed by callers)."""

    name: str
    identity: str  # a hash that changes whenever the model's answers could change
    #: "node": trees over junctions, no turn costs; "turn": trees over segments via turns
    graph_mode: str
    #: :meth:`run_from` takes ``targets`` (per origin, the keys the caller reads) and
    #: ``pointers`` and may then stop once those keys are settled, answering only them
    supports_targets: bool
    #: targeted runs are hierarchy queries, a small fraction of a whole-graph run (then a
    #: repeated root never widens to a whole run) and ``durations_to(roots, keys, bucket)``
    #: answers ``[R, K]`` seconds without pointers (duration matrices)
    targets_are_cheap: bool
    #: run keys carry a live traffic state (:class:`models.inference.live.RunKey`) beside
    #: the departure-time bucket
    uses_traffic: bool
    #: the IANA time zone of the model's clock for departures given with an offset (None:
    #: departure times are read as they come)
    timezone: str | None

    def time_bucket(self, departure_time: dt.datetime | None) -> int:
        """The departure-time bucket the model distinguishes (0 if it ignores time)."""
        ...

    def segment_times_s(self, bucket: int) -> np.ndarray:
        """``[E]`` positive seconds per segment (used for partial segments at the ends of a
        trip and for the Dijkstra fallback)."""
        ...

    def turn_times_s(self, bucket: int) -> np.ndarray | None:
        """``[T]`` seconds per turn (turn mode), or None."""
        ...

    def run_from(self, origins: np.ndarray, bucket: int, *,
                 targets: list[np.ndarray] | None = None, pointers: bool = True) -> OriginRun:
        """Travel times from each of ``origins`` (node indices; segments in turn mode).
        ``targets`` and ``pointers`` are passed only to models that declare
        ``supports_targets``: with ``pointers=False`` a targeted run may leave out the
        pointers off the paths back from the targets."""
        ...

"""Reference trip scoring from a TravelTimeModel's shortest-path trees (``run_from``), on the
trips' pre-snapped segment columns: the tests check that a model's trees give the answers of
its own ``predict`` (the product scores trips through the Predictor,
models.evaluation.evaluate.predict_trips)."""

from __future__ import annotations

import numpy as np


def predict_with_travel_time_model(model, graph, frame, *, chunk: int = 256) -> np.ndarray:
    """A reference for the tests: trip durations from any :class:`models.inference.travel_time.TravelTimeModel` (the
    Predictor's interface: the learned ETA model, free-flow): origins are run in batches per
    departure-time bucket; partial first / last segments use the model's segment times; an
    end on a two-way street may use either direction (turn mode)."""
    from models.baselines.learned import _snapped
    from models.baselines.routing import reverse_twins
    from models.inference.graph_modes import graph_mode

    origin_seg, origin_frac, dest_seg, dest_frac = _snapped(frame)
    if "departure_local" in frame.columns:
        buckets = np.array([model.time_bucket(t.to_pydatetime()) for t in frame["departure_local"]])
    else:
        buckets = np.zeros(len(frame), dtype=np.int64)
    mode = graph_mode(model.graph_mode)
    twins = reverse_twins(graph)
    best = np.full(len(frame), np.inf)
    for bucket in np.unique(buckets):
        rows = np.flatnonzero(buckets == bucket)
        times = np.asarray(model.segment_times_s(int(bucket)), dtype=np.float64)
        variants = [(origin_seg, origin_frac, dest_seg, dest_frac)]
        if mode.keys_are_segments:  # each direction of a two-way street is its own key
            flip_o = np.where(twins[origin_seg] >= 0, twins[origin_seg], origin_seg)
            flip_d = np.where(twins[dest_seg] >= 0, twins[dest_seg], dest_seg)
            variants += [
                (flip_o, 1 - origin_frac, dest_seg, dest_frac),
                (origin_seg, origin_frac, flip_d, 1 - dest_frac),
                (flip_o, 1 - origin_frac, flip_d, 1 - dest_frac),
            ]
        for o, fo, d, fd in variants:
            o, fo, d, fd = o[rows], fo[rows], d[rows], fd[rows]
            start, end = mode.start_key(graph, o), mode.end_key(graph, d)
            unique, inverse = np.unique(start, return_inverse=True)
            middle = np.full(len(rows), np.inf)
            for first in range(0, len(unique), chunk):
                run = model.run_from(unique[first : first + chunk], int(bucket))
                inside = (inverse >= first) & (inverse < first + chunk)
                middle[inside] = run.node_time_s[inverse[inside] - first, end[inside]]
            # from the end of o; to the end of d (turn) or the start of d (node)
            value = (1 - fo) * times[o] + middle + mode.end_share(fd) * times[d]
            same = (o == d) & (fd >= fo)
            value[same] = (fd[same] - fo[same]) * times[o[same]]
            # behind the origin on the same segment: needs a loop the trees do not give;
            # another direction answers it, or it stays unanswered
            value[(o == d) & (fd < fo)] = np.inf
            best[rows] = np.minimum(best[rows], value)
    return best

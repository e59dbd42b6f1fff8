"""Executing the frozen processor to its fixed point: work-list in torch for training
(``frontier``), NumPy and compiled numba loops for serving (``executor``, ``kernels``)."""

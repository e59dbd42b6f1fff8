"""Batch scoring: OD-pair tables scored on Dask with the one Predictor (``nareta score``)."""

"""Answering queries: the travel-time model protocol, live traffic state, loading models by
kind, the Predictor (snapping, run cache, legs, routes) and ``nareta eta``."""

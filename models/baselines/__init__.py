"""Baselines the ETA model must beat (free flow, learned scalar, GNN regressor) and the
line-graph routing they use."""

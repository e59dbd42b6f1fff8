"""The ETA model (encoder and decoder around the frozen processor) and its training."""

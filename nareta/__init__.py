"""nareta: road-network ETA and routing built on neural algorithmic reasoning."""

__version__ = "0.1.0"

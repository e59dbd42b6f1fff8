from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SHIPPED_PROCESSOR = REPO / "artifacts_shipped" / "processor"


@pytest.fixture(scope="session")
def shipped():
    """(processor, weight_encoder, manifest) of the shipped artifact, loaded once."""
    from models.processor.model import load_pretrained

    return load_pretrained(SHIPPED_PROCESSOR)


@pytest.fixture()
def four_nodes():
    """Hand-checked graph: 0->1 (1), 0->2 (4), 1->2 (2), 2->3 (1), 1->3 (5), 3->0 (7).

    From 0: d = [0, 1, 3, 4], predecessors [0, 0, 1, 2] (0->1->2->3 beats 0->1->3 = 6).
    """
    senders = np.array([0, 0, 1, 2, 1, 3])
    receivers = np.array([1, 2, 2, 3, 3, 0])
    weights = np.array([1.0, 4.0, 2.0, 1.0, 5.0, 7.0])
    return 4, senders, receivers, weights

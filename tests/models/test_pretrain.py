import dataclasses

import numpy as np

from models import processor as proc
from models.pretrain import TrainConfig, make_batch, pretrain


def test_batch_hints_align_with_steps():
    config = TrainConfig(batch_graphs=3, max_nodes=20)
    batch = make_batch(np.random.default_rng(0), config)
    assert batch.hint_distance.shape == (batch.num_steps + 1, batch.num_nodes)
    assert int(batch.source_mask.sum()) == 3


def test_tiny_pretrain_writes_a_loadable_artifact_and_resumes(tmp_path):
    config = TrainConfig(iterations=4, batch_graphs=2, max_nodes=16, checkpoint_every=2)
    model = proc.ProcessorConfig(hidden=4)
    checkpoint = tmp_path / "ckpt.pt"
    pretrain(
        tmp_path / "a",
        processor_config=model,
        train_config=config,
        checkpoint=checkpoint,
        progress=False,
        evaluate=False,
    )
    processor, _, manifest = proc.load_pretrained(tmp_path / "a")
    assert manifest["training"] == dataclasses.asdict(config) and manifest["seed"] == 0
    # a finished checkpoint resumes at the end: same weights without further training
    pretrain(
        tmp_path / "b",
        processor_config=model,
        train_config=config,
        checkpoint=checkpoint,
        progress=False,
        evaluate=False,
    )
    again, _, _ = proc.load_pretrained(tmp_path / "b")
    for (name, a), (_, b) in zip(
        processor.state_dict().items(), again.state_dict().items(), strict=True
    ):
        assert (a == b).all(), name

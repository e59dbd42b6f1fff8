import dataclasses

import numpy as np
import torch

from models.processor import model as proc
from models.processor.pretrain import TrainConfig, make_batch, pretrain


def test_batch_hints_align_with_steps():
    config = TrainConfig(batch_graphs=3, max_nodes=20)
    batch = make_batch(np.random.default_rng(0), config)
    assert batch.hint_distance.shape == (batch.num_steps + 1, batch.num_nodes)
    assert int(batch.source_mask.sum()) == 3


def test_tiny_pretrain_writes_a_loadable_artifact_and_resumes(tmp_path, monkeypatch):
    import pytest

    import models.processor.pretrain as pretrain_module

    config = TrainConfig(iterations=4, batch_graphs=2, max_nodes=16, checkpoint_every=2)
    model = proc.ProcessorConfig(hidden=4)
    options = dict(processor_config=model, train_config=config, progress=False, evaluate=False)
    pretrain(tmp_path / "straight", checkpoint=tmp_path / "straight.pt", **options)
    processor, _, manifest = proc.load_pretrained(tmp_path / "straight")
    assert manifest["training"] == dataclasses.asdict(config) and manifest["seed"] == 0
    assert not (tmp_path / "straight.pt").exists()  # removed once the artifact is written

    # interrupt after the checkpoint at iteration 2, then resume: same weights as straight
    real_make_batch, calls = pretrain_module.make_batch, []

    def interrupted(rng, cfg):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_make_batch(rng, cfg)

    checkpoint = tmp_path / "resumed.pt"
    monkeypatch.setattr(pretrain_module, "make_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pretrain(tmp_path / "resumed", checkpoint=checkpoint, **options)
    assert checkpoint.exists() and not (tmp_path / "resumed").exists()
    monkeypatch.setattr(pretrain_module, "make_batch", real_make_batch)
    pretrain(tmp_path / "resumed", checkpoint=checkpoint, **options)
    resumed, _, _ = proc.load_pretrained(tmp_path / "resumed")
    for (name, a), (_, b) in zip(
        processor.state_dict().items(), resumed.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name

"""Loading model artifacts through the registry: an ETA model finds its processor by hash,
so a model directory copied on its own still loads."""

from __future__ import annotations

import json
import shutil

import pytest

from models.inference.registry import find_processor, load_model
from nareta.errors import ArtifactError
from tests.models.conftest import REPO, SHIPPED_PROCESSOR

SHIPPED_ETA = REPO / "artifacts_shipped" / "eta_baltimore"


def _recorded(model_dir) -> dict:
    return json.loads((model_dir / "manifest.json").read_text())["processor"]


def test_model_copied_alone_loads_with_the_shipped_processor(tmp_path, bundled_graph):
    alone = tmp_path / "deploy" / "my_model"  # ../processor does not exist here
    shutil.copytree(SHIPPED_ETA, alone)
    assert not (alone / _recorded(alone)["path"]).exists()
    assert find_processor(alone, _recorded(alone)) == SHIPPED_PROCESSOR
    model = load_model(alone, bundled_graph)
    assert model.identity == load_model(SHIPPED_ETA, bundled_graph).identity


def test_processor_copied_inside_or_beside_the_model_is_found_first(tmp_path):
    model = tmp_path / "elsewhere" / "model"
    shutil.copytree(SHIPPED_ETA, model)
    shutil.copytree(SHIPPED_PROCESSOR, model / "processor")
    assert find_processor(model, _recorded(model)) == model / "processor"
    beside = tmp_path / "beside" / "model"
    shutil.copytree(SHIPPED_ETA, beside)
    shutil.copytree(SHIPPED_PROCESSOR, beside.parent / "processor")
    assert find_processor(beside, _recorded(beside)) == beside.parent / "processor"


def test_no_processor_with_the_hash_is_a_clear_error(tmp_path, bundled_graph):
    model = tmp_path / "model"
    shutil.copytree(SHIPPED_ETA, model)
    shutil.copytree(SHIPPED_PROCESSOR, model / "processor")
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["processor"]["hash"] = "0" * 64  # trained against a processor nobody has
    (model / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"000000000000\) is in none of .*processor; "
                                            r"copy that processor artifact into"):
        load_model(model, bundled_graph)

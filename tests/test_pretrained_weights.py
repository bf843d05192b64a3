"""model.pretrained_path: a local state_dict file, or torchvision weights ``<arch>:<WEIGHTS>`` read from
torchvision's cache. No test touches the network: TORCH_HOME is a temporary folder whose hub cache holds a
seeded, untrained ResNet-18 under the file name of ResNet18_Weights.IMAGENET1K_V1, and torch.hub's
download raises."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
import torchvision

from autoal_engine.config import EngineConfig, ModelConfig, weights_name
from autoal_engine.models import SmallCNN, TaskModel, load_pretrained

NAME = "resnet18:IMAGENET1K_V1"
FAMILIES = [{"backbone": "resnet18"}, {"backbone": "frozen", "features": "resnet18"}]


def no_download(*args, **kwargs):
    raise AssertionError("torch.hub tried to download")


@pytest.fixture(autouse=True)
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TORCH_HOME in tmp_path, with no cached weights yet, and downloads that raise."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return tmp_path


@pytest.fixture
def weights(offline: Path) -> Path:
    """A seeded ResNet-18 state_dict, in torchvision's cache (as IMAGENET1K_V1) and at a local path."""
    torch.manual_seed(0)
    state = torchvision.models.resnet18(weights=None).state_dict()
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    cached.parent.mkdir(parents=True)
    torch.save(state, cached)
    torch.save(state, offline / "resnet18.pt")
    return offline / "resnet18.pt"


def model_of(fields: dict, pretrained_path: str | None) -> TaskModel:
    """The model of a validated config (of ModelConfig as it is for no weights, which frozen needs)."""
    config = (EngineConfig.from_dict({"model": {**fields, "pretrained_path": pretrained_path}}).model
              if pretrained_path else ModelConfig(**fields))
    torch.manual_seed(1)  # the 3x3 stem (and the head) start alike: only the loaded weights differ
    return TaskModel(config, in_channels=3, num_classes=2).eval()


def embedding(model: TaskModel) -> torch.Tensor:
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        return model(x)[1]


@pytest.mark.parametrize("fields", FAMILIES, ids=["resnet18", "frozen"])
def test_a_local_file_and_the_torchvision_name_give_the_same_embeddings(weights, fields):
    from_file, from_name = model_of(fields, str(weights)), model_of(fields, NAME)
    assert torch.equal(embedding(from_file), embedding(from_name))
    scratch = model_of(fields, None)
    assert not torch.equal(embedding(from_file), embedding(scratch))  # the weights were loaded


def test_the_name_reads_torchvisions_cache_without_a_download(weights):
    layer = model_of({"backbone": "resnet18"}, NAME).backbone.layers[0][0].conv1.weight
    assert torch.equal(layer, torch.load(weights)["layer1.0.conv1.weight"])


def test_weights_missing_from_the_cache_are_a_download_which_fails_here_as_a_config_error(offline):
    with pytest.raises(ValueError, match=f"model.pretrained_path: cannot fetch '{NAME}'.*tried to download"):
        model_of({"backbone": "resnet18"}, NAME)


@pytest.mark.parametrize("name", ["vgg99:X", "resnet18:", "resnet18:not a member"])
def test_a_malformed_name_or_an_unknown_arch_fails_validation(name):
    with pytest.raises(ValueError, match=f"model.pretrained_path: '{name}'"):
        EngineConfig.from_dict({"model": {"backbone": "resnet18", "pretrained_path": name}})


@pytest.mark.parametrize("fields", [{"backbone": "small_cnn"}, {"backbone": "frozen", "features": "pca"},
                                    {"backbone": "frozen", "features": "small_cnn"}])
def test_weights_of_another_arch_than_the_models_fail_validation(fields):
    with pytest.raises(ValueError, match=f"model.pretrained_path: '{NAME}' are resnet18 weights"):
        EngineConfig.from_dict({"model": {**fields, "pretrained_path": NAME}})


def test_an_unknown_weights_member_fails_at_model_build(weights):
    config = EngineConfig.from_dict({"model": {"backbone": "resnet18", "pretrained_path": "resnet18:NOPE"}})
    with pytest.raises(ValueError, match="model.pretrained_path: 'resnet18:NOPE': torchvision has no NOPE"):
        TaskModel(config.model, in_channels=3, num_classes=2)


def test_an_existing_file_whose_name_has_a_colon_is_a_path(weights, monkeypatch):
    monkeypatch.chdir(weights.parent)
    os.rename(weights, "resnet18:local.pt")
    assert weights_name("resnet18:local.pt") is None
    assert weights_name("models/missing:1.pt") is None  # a path separator: a path, missing at model build
    assert weights_name(NAME) == ("resnet18", "IMAGENET1K_V1")
    assert torch.equal(embedding(model_of({"backbone": "resnet18"}, "resnet18:local.pt")),
                       embedding(model_of({"backbone": "resnet18"}, NAME)))


def test_a_tuning_trial_of_another_family_neither_fetches_nor_loads_the_named_weights():
    # validation keeps the name to its family; a trial of small_cnn (dataclasses.replace) still carries it
    torch.manual_seed(0)
    cnn = SmallCNN(3, ModelConfig().embedding_dim)
    before = {k: v.clone() for k, v in cnn.state_dict().items()}
    load_pretrained(cnn, NAME, "small_cnn")  # nothing is cached here, and a download raises
    assert all(torch.equal(before[k], v) for k, v in cnn.state_dict().items())


def test_pretrained_weights_keep_their_stem_and_a_gray_image_reads_it_as_rgb(weights):
    from autoal_engine.models import ResNet18Backbone

    pretrained = torch.load(weights, weights_only=True)["conv1.weight"]
    rgb = ResNet18Backbone(3, str(weights))
    assert torch.equal(rgb.stem[0].weight, pretrained)  # the 7x7 stem the later layers were trained on
    gray = ResNet18Backbone(1, str(weights)).eval()
    assert gray.stem[0].weight.shape == (64, 1, 7, 7)
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():  # a gray image gives the features of its RGB copy
        assert torch.allclose(gray(x)[0], rgb.eval()(x.repeat(1, 3, 1, 1))[0], atol=1e-5)
    assert ResNet18Backbone(1).stem[0].weight.shape == (64, 1, 3, 3)  # from scratch: the small-image stem

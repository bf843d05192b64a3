"""The task model's configurable parts: losses, augmentation, standardization, the frozen family, epochs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from autoal_engine import Engine, EngineConfig
from autoal_engine.augmentation import augment
from autoal_engine.config import ModelConfig
from autoal_engine.losses import class_weights, per_sample_loss
from autoal_engine.models import TaskModel, train_model, training_steps


def test_focal_with_gamma_zero_is_cross_entropy_and_down_weights_easy_items():
    logits = torch.tensor([[4.0, 0.0], [0.1, 0.0]])
    labels = torch.tensor([0, 0])
    ce = F.cross_entropy(logits, labels, reduction="none")
    torch.testing.assert_close(per_sample_loss(logits, labels, ModelConfig(loss="focal", focal_gamma=0.0)), ce)
    focal = per_sample_loss(logits, labels, ModelConfig(loss="focal", focal_gamma=2.0))
    assert focal[0] / ce[0] < focal[1] / ce[1]  # the confident item loses more of its weight


def test_class_balanced_weights_are_inverse_frequencies_and_zero_for_absent_classes():
    weights = class_weights(torch.tensor([0, 0, 0, 1]), 3)
    torch.testing.assert_close(weights, torch.tensor([4 / 6, 2.0, 0.0]))
    logits, labels = torch.zeros(4, 3), torch.tensor([0, 0, 0, 1])
    loss = per_sample_loss(logits, labels, ModelConfig(loss="class_balanced"), weights)
    assert loss[3] == pytest.approx(3 * loss[0])


def test_label_smoothing_raises_the_loss_of_a_confident_correct_item():
    logits, labels = torch.tensor([[8.0, 0.0, 0.0]]), torch.tensor([0])
    plain = per_sample_loss(logits, labels, ModelConfig())
    smooth = per_sample_loss(logits, labels, ModelConfig(loss="label_smoothing", label_smoothing=0.2))
    assert smooth.item() > plain.item() + 0.5


@pytest.mark.parametrize("policy", ["shift", "shift_crop"])
def test_augmentation_keeps_the_shape_changes_pixels_and_is_seeded(policy):
    images = torch.rand(6, 1, 16, 16)
    config = ModelConfig(augment=policy)
    first = augment(images, config, torch.Generator().manual_seed(3))
    again = augment(images, config, torch.Generator().manual_seed(3))
    assert first.shape == images.shape and torch.equal(first, again) and not torch.equal(first, images)
    assert torch.equal(augment(images, ModelConfig(augment="none"), torch.Generator()), images)


def test_flips_mirror_about_half_of_the_images_and_only_when_asked():
    images = torch.arange(16.0).view(1, 1, 4, 4).repeat(200, 1, 1, 1)
    flipped = augment(images, ModelConfig(augment="none", flip=True), torch.Generator().manual_seed(0))
    mirrored = (flipped[:, 0, 0, 0] == 3).float().mean().item()
    assert 0.35 < mirrored < 0.65
    assert torch.equal(augment(images, ModelConfig(augment="none"), torch.Generator()), images)


def test_standardize_keeps_the_training_images_statistics_in_the_model():
    images = 0.2 + 0.1 * torch.rand(20, 3, 8, 8)
    config = ModelConfig(standardize=True, image_size=8)
    model = TaskModel(config, 3, 2)
    train_model(model, images, torch.tensor([0, 1] * 10), config, 2, 0, torch.device("cpu"))
    torch.testing.assert_close(model.input_mean.flatten(), images.mean(dim=(0, 2, 3)))
    assert "input_std" in model.state_dict()


def test_the_frozen_pca_family_learns_digits_and_its_features_stay_frozen():
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy((digits.images[:300] / 16.0).astype(np.float32)).unsqueeze(1)
    labels = torch.from_numpy(digits.target[:300])
    config = ModelConfig(backbone="frozen", image_size=8, pca_components=30, head="mlp", epochs=60, augment="none")
    model = TaskModel(config, 1, 10)
    train_model(model, images, labels, config, training_steps(config, 300), 0, torch.device("cpu"))
    projection = model.backbone.extractor.projection.clone()
    assert projection[:30].abs().sum() > 0
    with torch.no_grad():
        logits, embedding, _ = model(images)
    assert (logits.argmax(1) == labels).float().mean() > 0.9 and embedding.shape == (300, config.head_hidden)
    train_model(model, images[:10], labels[:10], config, 1, 0, torch.device("cpu"))  # refits on its own data
    assert model.backbone.extractor.projection[9:].abs().sum() == 0  # 10 images: at most 9 components


def test_epochs_make_the_training_grow_with_the_labels():
    config = ModelConfig(epochs=10, batch_size=64)
    assert training_steps(config, 64) == 10 and training_steps(config, 640) == 100
    assert training_steps(config, 20) == 10  # batches never exceed the labeled set
    assert training_steps(ModelConfig(), 1000) == 300  # epochs unset: the fixed recipe


def test_old_boolean_augment_values_still_load():
    assert EngineConfig.from_dict({"model": {"augment": False}}).model.augment == "none"
    assert EngineConfig.from_dict({"model": {"augment": True}}).model.augment == "shift"


def test_frozen_features_of_a_pretrained_backbone_need_its_weights():
    with pytest.raises(ValueError, match="model.features"):
        EngineConfig.from_dict({"model": {"backbone": "frozen", "features": "small_cnn"}})


def test_a_frozen_engine_with_pretrained_small_cnn_features_fits_and_ranks(tmp_path):
    from autoal_engine.models import SmallCNN

    torch.manual_seed(0)
    path = tmp_path / "cnn.pt"
    torch.save(SmallCNN(1, 64).state_dict(), path)
    config = EngineConfig.from_dict({"model": {"backbone": "frozen", "features": "small_cnn", "image_size": 16,
                                               "pretrained_path": str(path), "epochs": 5},
                                     "strategies": ["margin", "coreset"]})
    rng = np.random.default_rng(0)
    engine = Engine(config).fit(rng.random((30, 16, 16), dtype=np.float32), [0, 1, 2] * 10)
    extractor = engine.model.backbone.extractor
    assert all(not p.requires_grad for p in extractor.parameters())
    assert torch.equal(extractor.blocks[0][0].weight, torch.load(path)["blocks.0.0.weight"])  # never trained
    assert len(engine.rank(rng.random((12, 16, 16), dtype=np.float32)).order) == 12

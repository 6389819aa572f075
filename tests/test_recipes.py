"""The training recipes a search can turn on (all off by default): batch augmentation, label
smoothing, AdamW with one-cycle, and the binary decision threshold chosen on validation.
Tiny synthetic tensors only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hpsearch.datamodules import data_config_from_dict
from hpsearch.datamodules.augment import random_affine
from hpsearch.datamodules.batches import TensorBatches
from hpsearch.datamodules.configs import data_key
from hpsearch.lightning_modules import CNNConfig, MLPConfig, OptimConfig
from hpsearch.lightning_modules.classifier import ClassifierModule
from hpsearch.lightning_modules.metrics import (
    binary_metrics,
    choose_threshold,
    smoothed_youden_threshold,
)
from hpsearch.search_spaces.errors import ConfigError
from hpsearch.search_spaces.schema import parse_space
from hpsearch.search_spaces.train_config import train_config_from_sections
from hpsearch.search_spaces.trials import trial_config


def _dot(row: int, col: int) -> torch.Tensor:
    image = torch.zeros(1, 1, 28, 28)
    image[0, 0, row, col] = 1.0
    return image


def _centre(image: torch.Tensor) -> np.ndarray:
    weights = image[0, 0].numpy()
    rows, cols = np.indices(weights.shape)
    return np.array([(rows * weights).sum(), (cols * weights).sum()]) / weights.sum()


# --------------------------------------------------------------------------- augmentation


def test_augmentation_moves_each_image_by_at_most_its_strength():
    g = torch.Generator().manual_seed(0)
    moved = [random_affine(_dot(14, 14), 1.0, g) for _ in range(50)]
    shifts = np.array([_centre(m) - 14 for m in moved])
    # About 3 px of 28 at strength 1 (2.8 px, times the scale's 1.1, plus what rotation and
    # scale do half a pixel off the centre); some images move, and no pixel leaves the image.
    assert np.abs(shifts).max() <= 3.5 and np.abs(shifts).max() > 1.0, shifts
    assert all(m.shape == (1, 1, 28, 28) and m.sum() > 0.5 for m in moved)
    half = [random_affine(_dot(14, 14), 0.5, torch.Generator().manual_seed(s))
            for s in range(50)]
    assert np.abs([_centre(m) - 14 for m in half]).max() <= 1.8


def test_no_augmentation_is_the_batch_itself_and_the_draws_repeat_with_their_seed():
    x = torch.rand(4, 1, 28, 28)
    assert random_affine(x, 0.0, torch.Generator()) is x
    a = random_affine(x, 0.7, torch.Generator().manual_seed(3))
    b = random_affine(x, 0.7, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, x)
    with pytest.raises(ValueError, match="image batches"):
        random_affine(torch.rand(4, 784), 0.5, torch.Generator())


def test_training_batches_are_augmented_reproducibly_and_labels_untouched():
    x = (torch.rand(32, 1, 28, 28) * 255).to(torch.uint8)
    y = torch.arange(32)

    def epoch(augment: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return list(TensorBatches(x, y, 8, shuffle=True, seed=1, augment=augment))

    plain, warped, again = epoch(0.0), epoch(0.5), epoch(0.5)
    for (px, py), (wx, wy), (ax, _) in zip(plain, warped, again, strict=True):
        assert torch.equal(py, wy) and not torch.equal(px, wx)
        torch.testing.assert_close(wx, ax, rtol=0, atol=0)


def test_augment_is_a_validated_data_field_that_leaves_the_decoded_data_alone():
    cfg = data_config_from_dict({"name": "mnist", "augment": 0.5})
    assert cfg.augment == 0.5 and data_config_from_dict({"name": "mnist"}).augment == 0.0
    # Trials that differ only in augmentation share one decoded copy of the data.
    assert data_key(cfg) == data_key(data_config_from_dict({"name": "mnist"}))
    with pytest.raises(ValueError, match="less than or equal to 1"):
        data_config_from_dict({"name": "fashion_mnist", "augment": 1.5})
    with pytest.raises(ValueError, match="augment"):  # HOG features are not images
        data_config_from_dict({"name": "hog_mnist", "augment": 0.5})


# --------------------------------------------------------------------------- label smoothing


def _mlp_module(smoothing: float, binary: bool = False) -> ClassifierModule:
    if binary:
        return ClassifierModule(CNNConfig(filters=(4,), dense=()),
                                OptimConfig(label_smoothing=smoothing), (1, 8, 8), 2)
    return ClassifierModule(MLPConfig(hidden=(8,)), OptimConfig(label_smoothing=smoothing),
                            (6,), 3)


def test_label_smoothing_shapes_the_training_loss_only():
    torch.manual_seed(0)
    module = _mlp_module(0.1)
    logits, targets = torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0])
    expected = nn.functional.cross_entropy(logits, targets, label_smoothing=0.1)
    torch.testing.assert_close(module._train_loss_of(logits, targets), expected)
    # Validation and test losses stay the plain cross-entropy.
    torch.testing.assert_close(module._loss(logits, targets),
                               nn.functional.cross_entropy(logits, targets))
    assert module._train_loss_of(logits, targets) != module._loss(logits, targets)


def test_label_smoothing_of_a_binary_head_softens_its_targets():
    module = _mlp_module(0.2, binary=True)
    logits, targets = torch.randn(6), torch.tensor([1, 0, 1, 1, 0, 0])
    soft = targets.float() * 0.8 + 0.1
    torch.testing.assert_close(module._train_loss_of(logits, targets),
                               nn.functional.binary_cross_entropy_with_logits(logits, soft))


def test_label_smoothing_is_validated():
    assert OptimConfig().label_smoothing == 0.0
    with pytest.raises(ValueError, match="less than 0.5"):
        OptimConfig(label_smoothing=0.5)


# --------------------------------------------------------------------------- AdamW, one-cycle

RECIPE_SPACE = {
    "experiment": "recipes",
    "data": {"name": "mnist"},
    "model": {"family": "cnn", "filters": [8, 16], "dense": [32]},
    "optimizer": {"name": "adamw"},
    "search": {
        "data.augment": {"type": "float", "low": 0.0, "high": 1.0},
        "optimizer.weight_decay": {"type": "float", "low": 1e-5, "high": 0.1, "log": True},
        "optimizer.schedule": {"type": "choice", "values": ["none", "cosine", "onecycle"]},
        "optimizer.label_smoothing": {"type": "float", "low": 0.0, "high": 0.2},
    },
    "objective": {"metric": "val_acc", "mode": "max"},
    "budget": {"num_samples": 2, "max_epochs": 2},
}


def test_a_space_reaches_every_recipe_option():
    space = parse_space(RECIPE_SPACE, "recipes.yaml")
    cfg = trial_config(space, {"data.augment": 0.3, "optimizer.weight_decay": 0.01,
                               "optimizer.schedule": "onecycle",
                               "optimizer.label_smoothing": 0.1})
    assert cfg.data.augment == 0.3 and cfg.optim.name == "adamw"
    assert cfg.optim.schedule == "onecycle" and cfg.optim.label_smoothing == 0.1
    bad = {**RECIPE_SPACE, "search": {"data.augment": {"type": "float", "low": 0.0,
                                                        "high": 2.0}}}
    with pytest.raises(ConfigError, match="augment"):
        parse_space(bad, "bad.yaml")


def test_adamw_decays_its_weights_apart_from_the_gradient_step():
    """Decoupled decay: with a zero gradient AdamW still shrinks the weights by lr * wd; Adam's
    L2 goes through the moment estimates instead."""
    weight = nn.Parameter(torch.ones(3))
    from hpsearch.lightning_modules.optim import build_optimizer

    optimizer = build_optimizer([weight], OptimConfig(name="adamw", lr=0.1, weight_decay=0.5))
    weight.grad = torch.zeros(3)
    optimizer.step()
    torch.testing.assert_close(weight.detach(), torch.full((3,), 1 - 0.1 * 0.5))


def test_the_lab_presets_stay_exact_with_every_recipe_off():
    cfg = train_config_from_sections({"data": {"name": "mnist"}, "model": {"family": "mlp"}},
                                     max_epochs=1, seed=0)
    assert cfg.data.augment == 0.0 and cfg.optim.label_smoothing == 0.0
    assert cfg.optim.schedule == "none"


# --------------------------------------------------------------------------- threshold


def test_youden_and_f1_thresholds_separate_what_can_be_separated():
    scores = np.array([0.05, 0.10, 0.20, 0.30, 0.32, 0.60, 0.70, 0.90])
    targets = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    for rule in ("youden", "f1"):
        threshold = choose_threshold(scores, targets, rule)
        assert 0.30 <= threshold < 0.32, (rule, threshold)
        assert binary_metrics(scores, targets, threshold)["accuracy"] == 1.0
    # At 0.5 one positive is missed.
    assert binary_metrics(scores, targets, 0.5)["accuracy"] == 7 / 8


def test_the_f1_rule_prefers_catching_positives_where_youden_balances():
    # Positives are the majority: F1 rewards calling the ambiguous case positive.
    scores = np.array([0.1, 0.2, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9])
    targets = np.array([0, 0, 1, 0, 1, 1, 1, 1, 1])
    youden = choose_threshold(scores, targets, "youden")
    f1 = choose_threshold(scores, targets, "f1")
    assert f1 <= youden
    assert binary_metrics(scores, targets, f1)["f1"] >= binary_metrics(
        scores, targets, youden)["f1"]


def test_the_smoothed_youden_threshold_is_steadier_where_a_few_images_decide_the_maximum():
    # Almost separable validation scores: the empirical Youden maximum sits wherever the few
    # overlapping images put it; the smoothed ROC's moves about half as much between draws.
    rng = np.random.default_rng(0)
    picks = {"youden": [], "youden_smooth": []}
    for _ in range(30):
        scores = np.concatenate([rng.beta(2, 20, 150), rng.beta(20, 2, 450)])
        targets = np.array([0] * 150 + [1] * 450)
        for rule in picks:
            picks[rule].append(choose_threshold(scores, targets, rule))
    assert np.std(picks["youden_smooth"]) < 0.6 * np.std(picks["youden"])
    assert abs(np.mean(picks["youden_smooth"]) - 0.5) < 0.02  # the classes mirror each other
    # Where the classes separate, it separates them too.
    scores = np.array([0.05, 0.10, 0.20, 0.30, 0.70, 0.80, 0.90, 0.95])
    targets = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    assert 0.3 < smoothed_youden_threshold(scores, targets) < 0.7


def test_threshold_rules_are_validated():
    assert CNNConfig().threshold_rule == "fixed"
    with pytest.raises(ValueError, match="threshold_rule"):
        CNNConfig(threshold_rule="best")
    with pytest.raises(ValueError, match="both classes"):
        choose_threshold(np.array([0.2, 0.4]), np.array([1, 1]), "youden")
    with pytest.raises(ValueError, match="rule"):
        choose_threshold(np.array([0.2, 0.4]), np.array([0, 1]), "median")


def test_validation_scores_are_the_model_s_probabilities_on_the_validation_split():
    from hpsearch.scripts.reports.retrain import validation_scores

    torch.manual_seed(0)
    module = _mlp_module(0.0, binary=True)
    x, y = torch.rand(10, 1, 8, 8), torch.tensor([0, 1] * 5)

    class _Val:
        def val_dataloader(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
            return [(x[:6], y[:6]), (x[6:], y[6:])]

    scores, targets = validation_scores(module, _Val())
    with torch.no_grad():
        expected = torch.sigmoid(module(x)).numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    assert targets.tolist() == y.tolist()

"""``evaluate``: top-1 accuracy and mean cross-entropy, checked on hand-made logits."""

from __future__ import annotations

import math

import torch

from dha_core.evaluate import evaluate


def test_accuracy_and_loss_on_hand_made_logits() -> None:
    # 5 samples over 3 classes in two batches: predictions 0, 2, 1 | 1, 0 against labels 0, 2, 2 | 1, 1
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, 1.0, 0.0], [0.0, 5.0, 0.0], [1.0, 0.0, 0.0]])
    labels = torch.tensor([0, 2, 2, 1, 1])
    images = torch.arange(5, dtype=torch.float32).view(5, 1)  # the "network" looks up its row
    batches = [(images[:3], labels[:3]), (images[3:], labels[3:])]
    result = evaluate(lambda x: logits[x.view(-1).long()], batches, torch.device("cpu"))
    assert result["acc"] == 3 / 5 and result["n"] == 5
    expected_loss = -sum(
        math.log(math.exp(row[y]) / sum(math.exp(v) for v in row))
        for row, y in zip(logits.tolist(), labels.tolist(), strict=True)
    ) / 5
    assert math.isclose(result["loss"], expected_loss, rel_tol=1e-6)


def test_empty_split_gives_zero_not_an_error() -> None:
    result = evaluate(lambda x: x, [], torch.device("cpu"))
    assert result == {"acc": 0.0, "loss": 0.0, "n": 0.0}

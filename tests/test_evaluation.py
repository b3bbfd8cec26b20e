"""Evaluation helpers: NIL by hand, Student-t confidence intervals, test-time episodes without side effects."""

import math

import numpy as np
import pytest
import torch

from mtml_core.config import ModelConfig
from mtml_core.evaluation import evaluate_episode, mean_ci, nil_episode, nil_predict
from mtml_core.model import MultiTaskModel


def test_nil_nearest_and_prototype_by_hand():
    support = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6], [-1.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 2])
    query = torch.tensor([[0.9, 0.5], [0.95, 0.05], [-0.5, -0.1]])
    # nearest: cos to [1,0], [0,1], [.8,.6], [-1,0]: q0 -> [.8,.6] (class 1); q1 -> [1,0]; q2 -> [-1,0]
    assert nil_predict(support, labels, query).tolist() == [1, 0, 2]
    # prototypes: class 0 [1,0], class 1 mean([0,1],[.8,.6]) = [.4,.8], class 2 [-1,0]
    # q0: cos to [1,0] = .9/1.0296 = .874, to [.4,.8] = .76/(1.0296*.8944) = .825 -> class 0
    assert nil_predict(support, labels, query, mode="prototype").tolist() == [0, 0, 2]
    with pytest.raises(ValueError, match="mode"):
        nil_predict(support, labels, query, mode="knn")
    with pytest.raises(ValueError, match="empty support"):
        nil_predict(support[:0], labels[:0], query)


def test_mean_ci_uses_student_t():
    mean, half = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert mean == pytest.approx(3.0)
    # t_{0.975, 4} = 2.7764451, sd = sqrt(2.5)
    assert half == pytest.approx(2.7764451 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6)
    big = np.random.default_rng(0).normal(size=2000)
    _, half_big = mean_ci(big)
    assert half_big == pytest.approx(1.9612 * big.std(ddof=1) / math.sqrt(2000), rel=1e-3)
    with pytest.raises(ValueError, match="no values"):
        mean_ci([])


def tiny_model():
    torch.manual_seed(0)
    cfg = ModelConfig(tasks=("class", "depth"), input_hw=(32, 32), filters=8, attention_dim=16, attention_heads=2)
    return MultiTaskModel(cfg).double().train()


def test_nil_episode_recognises_its_own_support_images():
    model = tiny_model()
    x = torch.randn(5, 3, 32, 32, dtype=torch.float64)
    y = torch.tensor([3, 1, 4, 0, 2])
    assert nil_episode(model, x, y, x, y) == pytest.approx(100.0)
    assert nil_episode(model, x, y, x, y, mode="prototype", use_attention=False) == pytest.approx(100.0)


def test_evaluate_episode_adapts_and_leaves_the_model_untouched():
    model = tiny_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(6, 3, 32, 32, dtype=torch.float64)
    depth = 1.0 + torch.rand(6, 1, 32, 32, dtype=torch.float64)
    depth[0, 0, :4] = float("nan")
    out = evaluate_episode(model, "depth", x[:3], depth[:3], x[3:], depth[3:], steps=5, lr=0.1)
    assert out["support_loss_after"] < out["support_loss_before"]
    assert {"loss", "mse", "abs_rel", "rmse", "delta_1.25_pct", "within_1e-3_pct"} <= set(out)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), f"{k} changed"
    with pytest.raises(ValueError, match="query images"):
        evaluate_episode(model, "depth", x[:3], depth[:3], x[3:], depth[4:], steps=1, lr=0.1)

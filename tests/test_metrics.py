"""Metrics against hand-computed values and validity masking."""

import math

import numpy as np
import pytest
import torch

from mtml_core.metrics import class_metrics, depth_metrics, normals_metrics, task_metrics, vp_metrics

NAN = float("nan")


def rot_x(deg):
    a = math.radians(deg)
    return torch.tensor([[1.0, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]],
                        dtype=torch.float64)


def test_depth_metrics_by_hand_with_invalid_pixels_masked():
    pred = torch.tensor([1.0, 2.0, 4.0, 3.0, 5.0, 7.0]).view(1, 1, 2, 3)
    target = torch.tensor([1.0, 2.5, 2.0, NAN, 0.0, 7.0005]).view(1, 1, 2, 3)  # NaN and 0 are invalid
    m = depth_metrics(pred, target)
    # valid pairs: (1, 1), (2, 2.5), (4, 2), (7, 7.0005)
    sq = [0.0, 0.25, 4.0, 0.0005 ** 2]
    assert m["mse"] == pytest.approx(sum(sq) / 4)
    assert m["rmse"] == pytest.approx(math.sqrt(sum(sq) / 4))
    assert m["abs_rel"] == pytest.approx((0 + 0.5 / 2.5 + 2 / 2 + 0.0005 / 7.0005) / 4)
    assert m["delta_1.25_pct"] == pytest.approx(50.0)  # ratios 1, 1.25 (not < 1.25), 2, 1.00007
    assert m["within_1e-3_pct"] == pytest.approx(50.0)


def test_normals_metrics_by_hand():
    target = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    angles = [5.0, 15.0, 25.0, 40.0]
    pred = torch.stack([rot_x(a) @ target for a in angles] + [target]).T.reshape(1, 3, 1, 5)
    labels = target.view(1, 3, 1, 1).expand(1, 3, 1, 5).clone()
    labels[0, :, 0, 4] = NAN  # the fifth pixel is invalid
    m = normals_metrics(pred, labels)
    assert m["angle_mean"] == pytest.approx(sum(angles) / 4)
    assert m["angle_median"] == pytest.approx(15.0)  # torch's lower median of an even count
    assert m["within_11.25deg_pct"] == pytest.approx(25.0)
    assert m["within_22.5deg_pct"] == pytest.approx(50.0)
    assert m["within_30deg_pct"] == pytest.approx(75.0)
    # MSE over components: |R t - t|² = 2 - 2 cos a, averaged over 3 components and 4 pixels
    assert m["mse"] == pytest.approx(sum(2 - 2 * math.cos(math.radians(a)) for a in angles) / 12)
    # within 1e-3: component x is exact (0) for every pixel, y and z are off
    assert m["within_1e-3_pct"] == pytest.approx(100 / 3)


def test_vp_metrics_are_sign_invariant_and_by_hand():
    target = torch.eye(3, dtype=torch.float64).unsqueeze(0).repeat(2, 1, 1)
    pred = target.clone()
    pred[0, 1] *= -1  # flipped direction: no error
    pred[1, 0] = rot_x(0.5) @ torch.tensor([1.0, 0, 0], dtype=torch.float64)  # about x: unchanged
    pred[1, 1] = rot_x(1.5) @ target[1, 1]
    pred[1, 2] = rot_x(5.0) @ target[1, 2]
    m = vp_metrics(pred, target)
    errors = [0, 0, 0, 0, 1.5, 5.0]
    assert m["angle_mean"] == pytest.approx(sum(errors) / 6, abs=1e-6)
    assert m["within_1deg_pct"] == pytest.approx(400 / 6)
    assert m["within_2deg_pct"] == pytest.approx(500 / 6)
    assert m["within_10deg_pct"] == pytest.approx(100.0)
    assert m["mse"] == pytest.approx(sum(2 - 2 * math.cos(math.radians(e)) for e in errors) / 18)
    flipped = vp_metrics(-pred, target)
    assert flipped == pytest.approx(m)


def test_class_metrics_and_dispatch():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]])
    labels = np.array([0, 1, 1, 1])
    assert class_metrics(logits, labels)["acc_pct"] == pytest.approx(75.0)
    assert task_metrics("class", torch.tensor([0, 1, 0, 0]), torch.tensor(labels))["acc_pct"] == pytest.approx(50.0)
    with pytest.raises(ValueError, match="unknown task"):
        task_metrics("semantics", logits, labels)
    with pytest.raises(ValueError, match="shape"):
        depth_metrics(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 3))


def test_no_valid_pixel_gives_nan():
    m = depth_metrics(torch.ones(1, 1, 2, 2), torch.full((1, 1, 2, 2), NAN))
    assert all(math.isnan(v) for v in m.values())

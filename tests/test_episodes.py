"""Episode samplers: shapes, labels, determinism, split hygiene, DataLoader path."""

import numpy as np
import pytest
import torch

from mtml_core.data.categories import categories
from mtml_core.data.episodes import (
    ClassEpisode,
    ClassEpisodeSampler,
    DomainEpisode,
    DomainEpisodeSampler,
    FrameCache,
    SynthCategories,
    collate,
    episode_loader,
)
from mtml_core.data.spec import builtin_envs

SMALL = (24, 32)


@pytest.fixture(scope="module")
def class_sampler():
    return ClassEpisodeSampler(SynthCategories("train", size=(21, 21), pool=6), n_way=5, k_shot=1, n_query=3,
                               size=(21, 21))


@pytest.fixture(scope="module")
def cache():
    return FrameCache(size=SMALL, pool=8)


def test_class_episode_shapes_labels_and_determinism(class_sampler):
    ep = class_sampler.sample(3)
    assert isinstance(ep, ClassEpisode)
    assert ep.support_x.shape == (5, 3, 21, 21) and ep.query_x.shape == (15, 3, 21, 21)
    assert ep.support_y.tolist() == [0, 1, 2, 3, 4] and ep.query_y.tolist() == np.repeat(np.arange(5), 3).tolist()
    assert ep.support_y.dtype == torch.int64 and ep.support_x.dtype == torch.float32
    assert len(set(ep.class_names)) == 5
    again = class_sampler.sample(3)
    assert torch.equal(ep.support_x, again.support_x) and ep.class_names == again.class_names
    assert class_sampler.sample(4).class_names != ep.class_names or not torch.equal(
        class_sampler.sample(4).query_x, ep.query_x)
    # support and query images of a class are distinct items
    for c in range(5):
        q = ep.query_x[ep.query_y == c]
        assert not any(torch.equal(ep.support_x[c], qi) for qi in q)


def test_class_episode_labels_match_the_rendered_category(class_sampler):
    ep = class_sampler.sample(11)
    src = class_sampler.source
    for label, name in enumerate(ep.class_names):
        # the support image of label i is an item of class_names[i]
        ref = [src.rgb(name, i) for i in range(src.num_items(name))]
        x = ep.support_x[label].permute(1, 2, 0).numpy() * 0.25 + 0.5
        assert min(np.abs(x * 255 - r).max() for r in ref) < 1e-3


def test_samplers_never_leak_test_categories_or_environments(cache):
    train_cats, test_cats = set(categories("train")), set(categories("test")) | set(categories("val"))
    sampler = ClassEpisodeSampler(SynthCategories("train", size=(8, 8), pool=4), 5, 1, 2, size=(8, 8))
    seen = set()
    for s in range(200):
        seen |= set(sampler.sample(s).class_names)
    assert seen <= train_cats and not seen & test_cats
    assert len(seen) == len(train_cats)  # all training categories get used
    train_envs = {e.name for e in builtin_envs("train")}
    dom = DomainEpisodeSampler("train", "depth", 2, 2, cache=cache)
    envs = {dom.sample(s).env for s in range(200)}
    assert envs == train_envs
    test_dom = DomainEpisodeSampler("test", "normals", 2, 2, cache=cache)
    assert {test_dom.sample(s).env for s in range(50)}.isdisjoint(train_envs)


@pytest.mark.parametrize("task,label_shape", [("depth", (1, 24, 32)), ("normals", (3, 24, 32)), ("vp", (3, 3))])
def test_domain_episodes(cache, task, label_shape):
    sampler = DomainEpisodeSampler("train", task, k_shot=3, n_query=4, cache=cache)
    ep = sampler.sample(5)
    assert isinstance(ep, DomainEpisode) and ep.task == task
    assert ep.support_x.shape == (3, 3, 24, 32) and ep.query_x.shape == (4, 3, 24, 32)
    assert ep.support_y.shape == (3, *label_shape) and ep.query_y.shape == (4, *label_shape)
    again = sampler.sample(5)
    assert ep.env == again.env and torch.equal(ep.query_x, again.query_x)
    # support and query frames are different frames of one environment
    assert not any(torch.equal(s, q) for s in ep.support_x for q in ep.query_x)
    if task == "depth":
        valid = torch.isfinite(ep.support_y)
        assert valid.any() and (ep.support_y[valid] > 0).all()
    if task == "vp":
        assert torch.allclose(ep.support_y @ ep.support_y.transpose(1, 2), torch.eye(3).expand(3, 3, 3), atol=1e-5)


def test_collate_and_dataloader_with_workers(cache):
    samplers = {"class": ClassEpisodeSampler(SynthCategories("train", size=(12, 12), pool=4), 3, 1, 2, size=(12, 12)),
                "depth": DomainEpisodeSampler("train", "depth", 2, 2, cache=cache)}
    loader = episode_loader(samplers, num_episodes=4, batch_size=2, seed=1, num_workers=2)
    batches = list(loader)
    assert len(batches) == 2
    b = batches[0]
    assert b["class"].support_x.shape == (2, 3, 3, 12, 12) and b["class"].query_y.shape == (2, 6)
    assert b["depth"].support_y.shape == (2, 2, 1, 24, 32) and b["depth"].task == "depth"
    assert len(b["class"].class_names) == 2 and len(b["depth"].env) == 2
    # worker count does not change the episodes
    single = list(episode_loader(samplers, num_episodes=4, batch_size=2, seed=1, num_workers=0))
    assert torch.equal(single[1]["depth"].query_x, batches[1]["depth"].query_x)
    assert single[0]["class"].class_names == b["class"].class_names
    with pytest.raises(ValueError, match="one kind"):
        collate([samplers["depth"].sample(0), DomainEpisodeSampler("train", "vp", 2, 2, cache=cache).sample(0)])


def test_sampler_argument_errors(cache):
    with pytest.raises(ValueError, match="domain task"):
        DomainEpisodeSampler("train", "class", cache=cache)
    with pytest.raises(ValueError, match="pool"):
        DomainEpisodeSampler("train", "depth", 5, 15, cache=cache)
    with pytest.raises(ValueError, match="split"):
        DomainEpisodeSampler("training", "depth", cache=cache)
    with pytest.raises(ValueError, match="classes"):
        ClassEpisodeSampler(SynthCategories("val", size=(8, 8), pool=4), n_way=7)

"""iterate: every sample once per epoch, an order fixed by the generator's seed alone."""

from __future__ import annotations

import pytest
import torch

from dltrain.data.base import Split
from dltrain.data.batching import iterate, num_batches


def numbered(n: int) -> Split:
    """x row i holds i twice, y[i] = i: a batch tells which samples it carries."""
    x = torch.arange(n, dtype=torch.float32).repeat(2, 1).T.contiguous()
    return Split(x, torch.arange(n))


def order(split, batch_size, seed, **kw):
    gen = torch.Generator().manual_seed(seed)
    return [b for _, y in iterate(split, batch_size, shuffle=True, generator=gen, **kw)
            for b in y.tolist()]


@pytest.mark.parametrize("n, batch_size", [(1, 4), (10, 3), (12, 4), (12, 64)])
def test_shuffled_epoch_covers_every_sample_once(n, batch_size):
    split = numbered(n)
    gen = torch.Generator().manual_seed(0)
    seen, sizes = [], []
    for x, y in iterate(split, batch_size, shuffle=True, generator=gen):
        assert torch.equal(x[:, 0], y.float()) and torch.equal(x[:, 1], y.float())  # x, y stay paired
        seen += y.tolist()
        sizes.append(len(y))
    assert sorted(seen) == list(range(n))
    assert len(sizes) == num_batches(n, batch_size) == -(-n // batch_size)
    assert all(s == batch_size for s in sizes[:-1])


def test_epochs_reshuffle_and_each_still_covers_all():
    split = numbered(20)
    gen = torch.Generator().manual_seed(3)
    epochs = [[i for _, y in iterate(split, 6, shuffle=True, generator=gen) for i in y.tolist()]
              for _ in range(3)]
    for e in epochs:
        assert sorted(e) == list(range(20))
    assert epochs[0] != epochs[1] != epochs[2]


def test_order_depends_on_the_generator_seed_only():
    split = numbered(30)
    torch.manual_seed(1)
    a = order(split, 7, seed=42)
    torch.manual_seed(999)  # the global generator must not matter
    torch.rand(5)
    b = order(split, 7, seed=42)
    c = order(split, 7, seed=43)
    assert a == b
    assert a != c
    assert a != list(range(30))
    # and it is exactly torch.randperm on that seed
    assert a == torch.randperm(30, generator=torch.Generator().manual_seed(42)).tolist()


def test_unshuffled_batches_are_in_order():
    split = numbered(7)
    got = [y.tolist() for _, y in iterate(split, 3, shuffle=False)]
    assert got == [[0, 1, 2], [3, 4, 5], [6]]


@pytest.mark.parametrize("shuffle", [False, True])
def test_min_last_drops_a_final_batch_of_one(shuffle):
    split = numbered(9)
    gen = torch.Generator().manual_seed(0)
    kept = [len(y) for _, y in iterate(split, 4, shuffle=shuffle, generator=gen, min_last=2)]
    assert kept == [4, 4]
    gen = torch.Generator().manual_seed(0)
    full = [len(y) for _, y in iterate(split, 4, shuffle=shuffle, generator=gen)]
    assert full == [4, 4, 1]


def test_min_last_keeps_larger_last_batches_and_a_lone_sample():
    assert [len(y) for _, y in iterate(numbered(10), 4, shuffle=False, min_last=2)] == [4, 4, 2]
    # a split of one sample has nothing else to train on: keep it
    assert [len(y) for _, y in iterate(numbered(1), 4, shuffle=False, min_last=2)] == [1]


def test_transform_runs_on_each_batch():
    base = numbered(5)
    split = Split(base.x.to(torch.uint8), base.y, transform=lambda x: x.float() / 2)
    xs = [x for x, _ in iterate(split, 2, shuffle=False)]
    assert all(x.dtype == torch.float32 for x in xs)
    assert torch.equal(torch.cat(xs)[:, 0], torch.arange(5) / 2)


def test_skip_resumes_an_epoch_where_it_stopped():
    """An epoch resumed after k batches yields exactly the rest of the same epoch."""
    split = numbered(23)
    full = [y.tolist() for _, y in iterate(split, 5, shuffle=True,
                                           generator=torch.Generator().manual_seed(9))]
    rest = [y.tolist() for _, y in iterate(split, 5, shuffle=True,
                                           generator=torch.Generator().manual_seed(9), skip=2)]
    assert rest == full[2:]

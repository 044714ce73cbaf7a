"""The batch transforms of uint8 images, checked against plain PyTorch written out by hand."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dltrain.data.transforms import NormalizeImages, RandomCropFlip


def images(n=32, c=3, h=8, w=10) -> torch.Tensor:
    return torch.randint(0, 256, (n, c, h, w), generator=torch.Generator().manual_seed(0),
                         dtype=torch.uint8)


def test_normalize_matches_the_formula():
    x = images()
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    got = NormalizeImages(mean, std)(x)
    want = (x.float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want)


def test_random_crop_flip_is_a_padded_crop_then_maybe_a_flip_of_each_image():
    x = images()
    torch.manual_seed(1)
    out = RandomCropFlip(padding=4)(x)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = F.pad(x, (4, 4, 4, 4))
    windows = set()
    flips = 0
    for i in range(len(x)):
        matches = [(dy, dx, flip) for dy in range(9) for dx in range(9) for flip in (False, True)
                   if torch.equal(out[i], (lambda c: c.flip(-1) if flip else c)(
                       padded[i, :, dy:dy + 8, dx:dx + 10]))]
        assert matches, f"image {i} is not a crop of its padded image"
        dy, dx, flip = matches[0]
        windows.add((dy, dx))
        flips += flip
    assert len(windows) > 5  # the offsets vary across the batch
    assert 0 < flips < len(x)  # some images flipped, not all


def test_augmentation_follows_the_global_seed():
    x = images()
    torch.manual_seed(3)
    a = RandomCropFlip()(x)
    torch.manual_seed(3)
    b = RandomCropFlip()(x)
    c = RandomCropFlip()(x)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_normalize_runs_the_augmentation_first():
    x = images()
    normalize = NormalizeImages((0.5,) * 3, (0.25,) * 3)
    augmented = normalize.with_augment(RandomCropFlip())
    torch.manual_seed(0)
    got = augmented(x)
    torch.manual_seed(0)
    want = normalize(RandomCropFlip()(x))
    assert torch.equal(got, want)
    # zero padding happens on the raw pixels: a padded pixel normalizes to (0 - mean) / std
    assert got.min() >= (0 - 0.5) / 0.25

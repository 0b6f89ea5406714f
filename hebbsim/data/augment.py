"""Data augmentation of the training images: random whole-pixel translations.

Each epoch, every training image is moved by ``(dy, dx)`` pixels, each drawn uniformly from
``{-max_shift, …, max_shift}``; pixels shifted in from outside the frame are 0 (the
background of MNIST and digits as loaded). The test (or validation) images are never moved.

The draws of epoch ``e`` come from their own stream of the seed, key ``(AUGMENT_STREAM, e)``
(:func:`hebbsim.dynamics.streams.seed_stream`):
a run resumed at epoch ``e`` sees the same images as an uninterrupted one without any state in
the checkpoint, and switching augmentation on changes nothing else in the run (the batch order
and the initial weights come from the run's own generator).
"""

from __future__ import annotations

import numpy as np

from ..dynamics.streams import seed_stream

__all__ = ["AUGMENT_STREAM", "augment_rng", "shift_images"]

AUGMENT_STREAM = 0x6175676D  # "augm": the spawn key that separates these draws from the run's


def augment_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator of epoch ``epoch``'s translations in a run of seed ``seed``."""
    return seed_stream(seed, AUGMENT_STREAM, epoch)


def shift_images(x: np.ndarray, image_shape: tuple[int, int], max_shift: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Every row of ``x`` (``(N, H·W)``, an image flattened row by row) translated by its own
    random ``(dy, dx)``, ``|dy|, |dx| ≤ max_shift``; a new array of ``x``'s dtype.

    A positive ``dy`` moves the content down, a positive ``dx`` to the right:
    ``out[n, i, j] = x[n, i − dy, j − dx]``, 0 where ``(i − dy, j − dx)`` lies outside the frame.
    """
    h, w = image_shape
    if x.ndim != 2 or x.shape[1] != h * w:
        raise ValueError(f"shift_images: inputs of shape {x.shape} are not images of {h} x {w} pixels")
    if max_shift < 0:
        raise ValueError(f"shift_images: max_shift = {max_shift} must be >= 0")
    k = int(max_shift)
    n = len(x)
    shifts = rng.integers(-k, k + 1, size=(n, 2))
    images = x.reshape(n, h, w)
    padded = np.zeros((n, h + 2 * k, w + 2 * k), dtype=x.dtype)
    padded[:, k:k + h, k:k + w] = images
    out = np.empty_like(images)
    # one slice per distinct shift: at most (2k + 1)² groups, each a plain strided copy
    code = (shifts[:, 0] + k) * (2 * k + 1) + (shifts[:, 1] + k)
    for c in np.unique(code):
        dy, dx = divmod(int(c), 2 * k + 1)
        dy, dx = dy - k, dx - k
        rows = code == c
        out[rows] = padded[rows, k - dy:k - dy + h, k - dx:k - dx + w]
    return out.reshape(n, h * w)

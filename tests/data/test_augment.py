"""Random translations of the training images (``data.augment_shift``)."""

import numpy as np
import pytest

import hebbsim
from hebbsim.data.augment import augment_rng, shift_images
from hebbsim.data.params import load_params
from hebbsim.errors import HebbsimError


def _shifted_by_roll(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The same translation written another way: roll, then blank what wrapped around."""
    out = np.roll(image, (dy, dx), axis=(0, 1))
    if dy > 0:
        out[:dy] = 0
    elif dy < 0:
        out[dy:] = 0
    if dx > 0:
        out[:, :dx] = 0
    elif dx < 0:
        out[:, dx:] = 0
    return out


@pytest.mark.parametrize("shape, k", [((28, 28), 2), ((8, 8), 1), ((5, 7), 3)])
def test_every_image_is_moved_by_its_own_draw(shape, k):
    h, w = shape
    x = np.random.default_rng(0).random((300, h * w)).astype(np.float32)
    out = shift_images(x, shape, k, augment_rng(7, 3))
    draws = augment_rng(7, 3).integers(-k, k + 1, size=(len(x), 2))
    for n in range(len(x)):
        want = _shifted_by_roll(x[n].reshape(h, w), *draws[n])
        np.testing.assert_array_equal(out[n].reshape(h, w), want)
    assert out.dtype == x.dtype and not np.shares_memory(out, x)
    # every shift occurs, about equally often
    counts = np.unique(draws[:, 0] * 100 + draws[:, 1], return_counts=True)[1]
    assert len(counts) == (2 * k + 1) ** 2 and counts.min() > 0


def test_zero_shift_is_the_identity_and_the_content_survives_inside_the_frame():
    x = np.zeros((50, 28 * 28), np.float32)
    x.reshape(50, 28, 28)[:, 10:18, 10:18] = 1.0  # a blob away from the border
    np.testing.assert_array_equal(shift_images(x, (28, 28), 0, augment_rng(1, 1)), x)
    out = shift_images(x, (28, 28), 4, augment_rng(1, 1))
    np.testing.assert_array_equal(out.sum(axis=1), 64.0)  # moved, never cut
    assert (out != x).any(axis=1).mean() > 0.9  # 80 of 81 shifts move the blob


def test_draws_depend_on_seed_and_epoch_only():
    a, b = augment_rng(1, 2).integers(-2, 3, 100), augment_rng(1, 2).integers(-2, 3, 100)
    np.testing.assert_array_equal(a, b)
    assert (augment_rng(1, 3).integers(-2, 3, 100) != a).any()
    assert (augment_rng(2, 2).integers(-2, 3, 100) != a).any()
    # not the run's own generator of the same seed (batch order, initial weights)
    assert (np.random.default_rng(1).integers(-2, 3, 100) != a).any()


def test_wrong_shapes_are_refused():
    with pytest.raises(ValueError, match="not images of 28 x 28"):
        shift_images(np.zeros((3, 64), np.float32), (28, 28), 1, augment_rng(1, 1))


def test_augmented_run_trains_on_moved_images(tiny_run):
    plain = hebbsim.run(tiny_run("plain", learning__epochs=2), progress=False, log=None)
    moved = hebbsim.run(tiny_run("moved", learning__epochs=2, data__augment_shift=1), progress=False, log=None)
    assert moved.attrs["parameters"].count("augment_shift = 1") == 1
    # epoch 1 starts from the same weights and order; the images differ, so does what is learned
    w_plain, w_moved = plain["weight_x_to_h1"].values[-1], moved["weight_x_to_h1"].values[-1]
    assert not np.allclose(w_plain, w_moved)
    assert np.isfinite(moved["test_error"].values).all()


@pytest.mark.parametrize("change, words", [
    ({"augment_shift": 5}, "data.augment_shift"),
    ({"augment_shift": -1}, "data.augment_shift"),
    ({"augment_shift": 1, "standardize": True}, "data.augment_shift = 1 with data.standardize = true"),
])
def test_bad_settings_are_refused_in_one_line(tiny_run, change, words):
    p = tiny_run()
    p["data"].update(change)
    with pytest.raises(HebbsimError) as err:
        load_params(p)
    assert words in str(err.value) and "\n" not in str(err.value).strip()

"""The shapes dataset (shapes.py): the grid, what each factor does to the pixels, and the cache."""

import errno
import math
import tempfile

import numpy as np
import pytest

import shapes
from shapes import FACTORS, RADIUS, ROTATIONAL_SYMMETRY, SHAPE_NAMES, SIZE, SPRITE, generate, load_shapes

SIZES = tuple(len(factor.values) for factor in FACTORS)
SHAPE, SCALE, ORIENTATION, X, Y = range(5)
AREA_PER_SQUARED_RADIUS = {"square": 2.0, "ellipse": math.pi / 2, "heart": 2.19}  # at circumradius r


@pytest.fixture(scope="module")
def dataset():
    return generate()


@pytest.fixture(scope="module")
def grid(dataset):
    """The images indexed by factor: (shape, scale, orientation, x, y, 28, 28), a view."""
    return dataset[0].reshape(*SIZES, SIZE, SIZE)


def corner_sprites(grid):
    """(shape, scale, orientation, 28, 28) as ints, at the first x and y."""
    return grid[:, :, :, 0, 0].astype(np.int64)


def test_the_factors_are_the_documented_grid():
    assert [factor.name for factor in FACTORS] == ["shape", "scale", "orientation", "x", "y"]
    assert SIZES == (3, 6, 20, 14, 14) and math.prod(SIZES) == 70560
    assert FACTORS[SHAPE].values == SHAPE_NAMES == ("square", "ellipse", "heart")
    assert FACTORS[SCALE].values == (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    angles = np.array(FACTORS[ORIENTATION].values)  # radians, the full turn without its end
    assert angles[0] == 0 and angles[-1] < 2 * math.pi
    np.testing.assert_allclose(np.diff(angles), 2 * math.pi / 20)
    for axis in (X, Y):  # the centroid's pixel coordinates, symmetric about the image's centre
        positions = np.array(FACTORS[axis].values)
        assert positions[0] == 7.5 and np.all(np.diff(positions) == 1) and positions[0] + positions[-1] == SIZE


def test_generate_is_deterministic_with_the_documented_types(dataset):
    images, factors = dataset
    assert images.shape == (70560, SIZE, SIZE) and images.dtype == np.uint8
    assert factors.shape == (70560, 5) and factors.dtype == np.int64 and factors.flags.c_contiguous
    again = generate()
    assert np.array_equal(again[0], images) and np.array_equal(again[1], factors)


def test_every_combination_once_in_ndindex_order(dataset):
    _, factors = dataset
    assert np.array_equal(factors, np.array(list(np.ndindex(SIZES))))
    assert len(np.unique(factors, axis=0)) == len(factors)


def test_x_and_y_move_the_image_by_whole_pixels_and_place_the_centroid(dataset, grid):
    assert np.array_equal(grid[:, :, :, 1:, :, :, 1:], grid[:, :, :, :-1, :, :, :-1])  # one x step: one column right
    assert np.array_equal(grid[:, :, :, :, 1:, 1:, :], grid[:, :, :, :, :-1, :-1, :])  # one y step: one row down
    images, factors = dataset
    column_mass, row_mass = images.sum(1, dtype=np.int64), images.sum(2, dtype=np.int64)  # (N, 28) each
    centres = np.arange(SIZE) + 0.5
    columns = column_mass @ centres / column_mass.sum(1)
    rows = row_mass @ centres / row_mass.sum(1)
    np.testing.assert_allclose(columns, np.array(FACTORS[X].values)[factors[:, X]], atol=0.02)
    np.testing.assert_allclose(rows, np.array(FACTORS[Y].values)[factors[:, Y]], atol=0.02)


def test_scale_grows_the_area_as_its_square(grid):
    area = corner_sprites(grid).sum((-1, -2)) / 255  # (shape, scale, orientation)
    assert np.all(np.diff(area, axis=1) > 0)
    radii = RADIUS * np.array(FACTORS[SCALE].values)
    for index, name in enumerate(SHAPE_NAMES):
        expected = AREA_PER_SQUARED_RADIUS[name] * radii[:, None] ** 2
        np.testing.assert_allclose(area[index], np.broadcast_to(expected, area[index].shape), rtol=0.05)


def test_the_shapes_differ_at_every_scale_and_orientation(grid):
    sprites = corner_sprites(grid)
    area = sprites.sum((-1, -2))
    assert np.all(area[1] < area[0]) and np.all(area[0] < area[2])  # ellipse < square < heart
    for first, second in ((0, 1), (0, 2), (1, 2)):
        assert np.all(np.abs(sprites[first] - sprites[second]).max((-1, -2)) >= 64)


def test_each_orientation_step_changes_a_heart_and_symmetries_repeat_exactly(grid):
    sprites = corner_sprites(grid)
    steps = np.abs(sprites - np.roll(sprites, 1, axis=2)).max((-1, -2))  # (shape, scale, orientation)
    assert np.all(steps[SHAPE_NAMES.index("heart")] >= 64)
    for index, name in enumerate(SHAPE_NAMES):
        period = SIZES[ORIENTATION] // ROTATIONAL_SYMMETRY[name]
        assert np.array_equal(sprites[index], np.roll(sprites[index], period, axis=1)), name
        for shift in range(1, period):
            assert np.all(np.abs(sprites[index] - np.roll(sprites[index], shift, axis=1)).max((-1, -2)) > 0)


def test_a_quarter_turn_is_five_steps_counter_clockwise(grid):
    centred = grid[:, :, :, 6, 6, 6:21, 6:21].astype(np.int64)  # the sprite's canvas: its centroid in the middle
    assert np.array_equal(centred[:, :, 5:], np.rot90(centred, axes=(-2, -1))[:, :, :15])
    for sprite in centred[SHAPE_NAMES.index("heart"), :, 0]:  # upright: the tip is below, farther than the top
        rows = np.flatnonzero(sprite.sum(1))
        assert rows[-1] - SPRITE // 2 > SPRITE // 2 - rows[0]


def test_nothing_touches_the_border_and_the_largest_shapes_reach_the_margin(dataset, grid):
    images, _ = dataset
    assert not images[:, [0, -1], :].any() and not images[:, :, [0, -1]].any()
    assert grid[:, -1, :, 0, :, :, 1].any() and grid[:, -1, :, -1, :, :, -2].any()


# the cache: the full grid once, then a small one (3 x 6 x 4 x 2 x 2 images) for the ways a cache goes bad
SMALL_GRID = (
    *FACTORS[:2],
    FACTORS[2]._replace(values=tuple(k * math.pi / 2 for k in range(4))),
    FACTORS[X]._replace(values=(7.5, 8.5)),
    FACTORS[Y]._replace(values=(7.5, 8.5)),
)
OTHER_GRID = (*SMALL_GRID[:3], FACTORS[X]._replace(values=(7.5, 8.5, 9.5)), SMALL_GRID[4])


@pytest.fixture
def small_grid(monkeypatch):
    """shapes.FACTORS is SMALL_GRID; its images and factors."""
    monkeypatch.setattr(shapes, "FACTORS", SMALL_GRID)
    return generate()


def quiet(line):
    pass


def test_the_cache_round_trip(tmp_path, monkeypatch, dataset):
    said = []
    images, factors = load_shapes(tmp_path, log=said.append)
    assert len(said) == 1 and said[0].startswith("shapes: made 70,560 images in ") and str(tmp_path) in said[0]
    assert list(tmp_path.iterdir()) == [tmp_path / "shapes28.npz"]  # no temporary file left
    monkeypatch.setattr(shapes, "generate", lambda: pytest.fail("a good cache is not made again"))
    cached_images, cached_factors = load_shapes(tmp_path, log=said.append)
    assert len(said) == 1
    for array, expected in zip((images, factors, cached_images, cached_factors), dataset * 2):
        assert np.array_equal(array, expected) and array.dtype == expected.dtype


def spoil(path, how, monkeypatch):
    """Leave at `path` a cache that `how` describes."""
    if how in ("empty", "not a cache"):
        path.write_bytes(b"" if how == "empty" else b"not a cache\n")
        return
    with monkeypatch.context() as patch:
        if how == "another version":
            patch.setattr(shapes, "VERSION", shapes.VERSION + 1)
        if how == "another grid":
            patch.setattr(shapes, "FACTORS", OTHER_GRID)
        load_shapes(path.parent, log=quiet)
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    if how == "corrupt":  # one pixel changed, the digests kept
        with np.load(path) as cache:
            arrays = dict(cache)
        arrays["images"][5, 10, 10] ^= 1
        np.savez(path, **arrays)


BAD_CACHES = {
    "truncated": "is unreadable (BadZipFile",
    "empty": "is unreadable (EOFError",
    "not a cache": "is unreadable (ValueError",
    "another version": "was made with another grid or code version",
    "another grid": "was made with another grid or code version",
    "corrupt": "is corrupt: its arrays do not match their digest",
}


@pytest.mark.parametrize("how", BAD_CACHES)
def test_a_bad_cache_is_made_again_in_one_line(tmp_path, monkeypatch, small_grid, how):
    path = tmp_path / "shapes28.npz"
    spoil(path, how, monkeypatch)
    said = []
    images, factors = load_shapes(tmp_path, log=said.append)
    assert len(said) == 1 and "\n" not in said[0], said
    assert said[0].startswith(f"shapes: {path} {BAD_CACHES[how]}") and f"; made {len(images)} images in" in said[0]
    assert np.array_equal(images, small_grid[0]) and np.array_equal(factors, small_grid[1])
    load_shapes(tmp_path, log=said.append)
    assert len(said) == 1  # made again, and cached


def read_only(*args, **kwargs):
    raise OSError(errno.EROFS, "Read-only file system")


@pytest.mark.parametrize("folder", ["read-only", "a file"])
def test_an_unwritable_cache_folder_still_gives_the_data(tmp_path, monkeypatch, small_grid, folder):
    cache_dir = tmp_path
    if folder == "read-only":  # chmod does not stop root: fail where files.atomic_write makes its temporary file
        monkeypatch.setattr(tempfile, "mkstemp", read_only)
    else:
        cache_dir = tmp_path / "file"
        cache_dir.write_text("")
    said = []
    images, factors = load_shapes(cache_dir, log=said.append)
    assert len(said) == 1 and "\n" not in said[0] and "not cached: " in said[0], said
    assert ("Read-only file system" if folder == "read-only" else "cannot make") in said[0]
    assert np.array_equal(images, small_grid[0]) and np.array_equal(factors, small_grid[1])

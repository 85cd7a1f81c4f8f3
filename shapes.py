"""A dSprites-like dataset drawn here at 28x28: every combination of 3 shapes x 6 scales x 20 orientations x 14 x 14
positions once, 70,560 grey images (about Fashion-MNIST's 70,000), so that the models take it unchanged.

dSprites (Matthey et al. 2017: 737,280 images of 64x64, 40 orientations, 32 x 32 positions) cannot be downloaded
here, and it is procedural. The grid, and why:
- shape: square, ellipse (axes 2:1, the long one horizontal at orientation 0) and heart (its tip down). At scale 1
  each fills a disc of RADIUS = 6.5 px about its centroid (circumradius, not area, is equal: a square covers 2.0 r^2,
  an ellipse 1.57 r^2, a heart 2.2 r^2), so it fits the same disc at every orientation.
- scale: 0.5 to 1 in 6 steps, as in dSprites.
- orientation: 20 angles, k * 18 degrees counter-clockwise on screen, in radians (dSprites has 40, and 0 and 2 pi
  both). A 9-degree step moves the tip of the smallest shape (3.25 px from its centre) by half a pixel, an 18-degree
  step by one. 20 is a multiple of 4: a quarter turn is 5 steps, drawn as np.rot90 of the sprite, exactly.
- x and y: the centroid's column and row in pixels (the image spans 0 to 28 and pixel j covers [j, j + 1]; y grows
  downwards): 7.5, 8.5, ..., 20.5. Whole-pixel steps let each sprite be drawn once and copied to every position;
  14 positions + the largest diameter (13 px) + one empty pixel on each side = 28, so nothing is clipped and the
  outermost ring of pixels is 0 in every image.

Pixels are grey: the fraction of 8 x 8 samples per pixel that fall inside the shape, 0..255, so that the smallest
shapes keep their orientation. Binary pixels (coverage >= 1/2) would draw the smallest square's 5 orientations as
2 images, and one step of the smallest heart would change 2 pixels; the Bernoulli likelihood takes grey pixels, as
it does Fashion-MNIST's.

Symmetries: the full turn is kept, as in dSprites, so that the grid is a plain product. A square's images repeat
every 5 orientation steps (90 degrees) and an ellipse's every 10 (180 degrees), bit for bit: for them orientation is
identifiable only modulo that period (ROTATIONAL_SYMMETRY), and a classifier's orientation accuracy is at most 1/4
on squares and 1/2 on ellipses. A metric that scores orientation should fold the index (index % (20 // symmetry)).

Determinism: pure numpy on exactly representable sample coordinates, with +, -, *, / and comparisons only
(correctly rounded on every machine); the cosines and sines of the first quarter turn are rounded to multiples of
2^-20, so that a libm one ulp off changes no bit.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from files import WriteError, atomic_write

VERSION = 1  # of the drawing: bump it when any pixel changes, and every cache is made again
SIZE = 28  # pixels per side
RADIUS = 6.5  # px: the disc about the centroid that holds every shape at scale 1
SPRITE = 15  # px: the square canvas a shape is drawn on, its centroid at the middle pixel's centre
SUPERSAMPLE = 8  # samples per pixel along each axis: 64 coverage levels
HEART_CENTROID = 0.2935  # the centroid's height in (x^2 + y^2 - 1)^3 <= x^2 y^3 (numerically; the tip is (0, -1))
HEART_RADIUS = 1 + HEART_CENTROID  # the tip's distance from the centroid: the heart's circumradius
REPO_DATA_DIR = Path(__file__).resolve().parent / "data"  # git-ignored
CACHE_NAME = "shapes28.npz"


class Factor(NamedTuple):
    name: str
    values: tuple[float | str, ...]


SHAPE_NAMES = ("square", "ellipse", "heart")
ROTATIONAL_SYMMETRY = {"square": 4, "ellipse": 2, "heart": 1}  # turns per full turn that give the same image
POSITIONS = tuple(SPRITE / 2 + step for step in range(SIZE - SPRITE + 1))  # 7.5 ... 20.5
FACTORS: tuple[Factor, ...] = (
    Factor("shape", SHAPE_NAMES),
    Factor("scale", (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)),
    Factor("orientation", tuple(2 * math.pi * step / 20 for step in range(20))),  # radians
    Factor("x", POSITIONS),  # the centroid's column, px
    Factor("y", POSITIONS),  # the centroid's row, px, downwards
)


class CacheError(Exception):
    """A cache file that cannot be used (unreadable, another grid or version, corrupt); the message names it."""


def inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Which points (u, v), in units of the circumradius about the centroid (v upwards), lie inside the shape."""
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 1 / math.sqrt(2)
    if shape == "ellipse":
        return u * u + 4 * v * v <= 1
    x, y = u * HEART_RADIUS, v * HEART_RADIUS + HEART_CENTROID
    ring = x * x + y * y - 1
    return ring * ring * ring <= x * x * y * y * y  # products, not ** (numpy's power may call libm's pow)


def draw(shape: str, scale: float, angle: float) -> np.ndarray:
    """One shape on a SPRITE x SPRITE canvas as uint8 coverage, turned by `angle` counter-clockwise on screen."""
    offsets = (np.arange(SPRITE * SUPERSAMPLE) + 0.5) / SUPERSAMPLE - SPRITE / 2  # exact binary fractions
    x, y = offsets[None, :], -offsets[:, None]  # y upwards
    cos, sin = (round(f(angle) * 2**20) / 2**20 for f in (math.cos, math.sin))
    radius = RADIUS * scale
    hits = inside(shape, (cos * x + sin * y) / radius, (cos * y - sin * x) / radius)
    counts = hits.reshape(SPRITE, SUPERSAMPLE, SPRITE, SUPERSAMPLE).sum(axis=(1, 3))
    samples = SUPERSAMPLE * SUPERSAMPLE
    return ((counts * 255 + samples // 2) // samples).astype(np.uint8)


def draw_sprites() -> np.ndarray:
    """Every shape x scale x orientation sprite, (shapes, scales, orientations, SPRITE, SPRITE) uint8: the first
    quarter turn drawn, the other three np.rot90 of it."""
    shapes, scales, angles = (factor.values for factor in FACTORS[:3])
    if len(angles) % 4 or any(angle != 2 * math.pi * k / len(angles) for k, angle in enumerate(angles)):
        raise ValueError("orientations must be k * 2 pi / n for k < n, with n a multiple of 4")
    quarter = len(angles) // 4
    sprites = np.zeros((len(shapes), len(scales), len(angles), SPRITE, SPRITE), np.uint8)
    for (i, shape), (j, scale), k in itertools.product(enumerate(shapes), enumerate(scales), range(quarter)):
        sprites[i, j, k] = draw(shape, scale, angles[k])
        for turns in range(1, 4):
            sprites[i, j, k + turns * quarter] = np.rot90(sprites[i, j, k], turns)
    return sprites


def generate() -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 28, 28) and factors int64 (N, 5), the value index of each factor, in np.ndindex order over
    the factor sizes (as dSprites' latents_classes); the same bits on every call and machine."""
    sizes = tuple(len(factor.values) for factor in FACTORS)
    sprites = draw_sprites()
    images = np.zeros((*sizes, SIZE, SIZE), np.uint8)
    for (i, x), (j, y) in itertools.product(enumerate(FACTORS[3].values), enumerate(FACTORS[4].values)):
        left, top = int(x - SPRITE / 2), int(y - SPRITE / 2)
        images[:, :, :, i, j, top : top + SPRITE, left : left + SPRITE] = sprites
    factors = np.indices(sizes).reshape(len(sizes), -1).T
    return images.reshape(-1, SIZE, SIZE), np.ascontiguousarray(factors, dtype=np.int64)


def spec_digest() -> str:
    """sha256 of everything the pixels depend on: the code version, the grid and the drawing settings."""
    spec = {
        "version": VERSION,
        "size": SIZE,
        "radius": RADIUS,
        "sprite": SPRITE,
        "supersample": SUPERSAMPLE,
        "heart": HEART_CENTROID,
        "factors": [[factor.name, list(factor.values)] for factor in FACTORS],
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def data_digest(images: np.ndarray, factors: np.ndarray) -> str:
    """sha256 of the arrays' dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for array in (images, factors):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def read_cache(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached images and factors; None when there is no cache; CacheError when it cannot be used."""
    try:
        cache = np.load(path, allow_pickle=False)
        if not isinstance(cache, np.lib.npyio.NpzFile):
            raise CacheError(f"{path} is not an .npz file")
        with cache:
            if str(cache["spec_digest"]) != spec_digest():
                raise CacheError(f"{path} was made with another grid or code version")
            images, factors, digest = cache["images"], cache["factors"], str(cache["data_digest"])
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "no details"
        raise CacheError(f"{path} is unreadable ({type(error).__name__}: {reason})") from None
    sizes = tuple(len(factor.values) for factor in FACTORS)
    expected = ((math.prod(sizes), SIZE, SIZE), np.uint8), ((math.prod(sizes), len(sizes)), np.int64)
    if ((images.shape, images.dtype), (factors.shape, factors.dtype)) != expected:
        raise CacheError(f"{path} holds arrays of other shapes or types than this grid's")
    if data_digest(images, factors) != digest:
        raise CacheError(f"{path} is corrupt: its arrays do not match their digest")
    return images, factors


def write_cache(path: Path, images: np.ndarray, factors: np.ndarray) -> None:
    """Write the arrays and their digests atomically; WriteError (one line) when the folder is not writable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WriteError(f"cannot make {path.parent}: {error.strerror or error}") from None
    digests = {"spec_digest": np.array(spec_digest()), "data_digest": np.array(data_digest(images, factors))}
    atomic_write(path, lambda file: np.savez(file, images=images, factors=factors, **digests))


def load_shapes(cache_dir: Path | None = None, log: Callable[[str], None] = print) -> tuple[np.ndarray, np.ndarray]:
    """generate()'s images and factors, cached in cache_dir/shapes28.npz (default: the repository's data/). A cache
    that is missing, unreadable, corrupt or of another grid or version is made again, and one line says so."""
    path = Path(REPO_DATA_DIR if cache_dir is None else cache_dir) / CACHE_NAME
    problem = ""
    try:
        if (cached := read_cache(path)) is not None:
            return cached
    except CacheError as error:
        problem = f"{error}; "
    started = time.perf_counter()
    images, factors = generate()
    made = f"made {len(images):,} images in {time.perf_counter() - started:.1f} s"
    try:
        write_cache(path, images, factors)
        log(f"shapes: {problem}{made} -> {path}")
    except WriteError as error:
        log(f"shapes: {problem}{made}, not cached: {error}")
    return images, factors

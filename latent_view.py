"""What the latent explorers and figures show of a set of posterior means, decided once: a LatentView.

It knows the coordinates the scatter shows (the SHOWN whose means vary most: the active ones), one range per
coordinate (its 1st-99th percentile widened by MARGIN on each side: the sliders' range and the axes'), the start point
(the medians), the class means, the ways to colour the points (by class, or by a known factor of the dataset) and the
one jitter of the strip plots. The notebook explorer and its static picture (explorer.py), the web page (webpage.py)
and plots.plot_latent_projections all draw from one. Imports nothing of the project.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from data import Dataset

SHOWN = 3  # coordinates in the scatter: those whose posterior means vary most
TAIL = 0.01  # a coordinate's range starts from its TAIL and 1 - TAIL quantiles: outliers do not stretch the view
MARGIN = 0.1  # of that span, added on each side: the range of the sliders and the axes
JITTER = 0.3  # a strip plot's points lie within this of their class's row
SEED = 0  # of the jitter


def top_dimensions(means: Tensor, k: int = SHOWN) -> list[int]:
    """The (up to) k latent dimensions whose posterior means vary most over the data, in index order."""
    return sorted(means.var(0).argsort(descending=True)[:k].tolist())


def central_range(means: Tensor, tail: float = TAIL) -> tuple[Tensor, Tensor]:
    """Per dimension, the `tail` and 1 - `tail` quantiles of the posterior means: where the data lies."""
    low, high = torch.quantile(means.float(), torch.tensor([tail, 1 - tail]), dim=0)
    return low, high


@dataclass(frozen=True)
class Colouring:
    """One way to colour the points: by class (`names` gives each value's name) or by a known factor (its value
    indices 0 .. levels - 1, in order; no names)."""

    name: str  # what the menus show: "class", "class (shape)", "scale", ...
    values: Tensor  # (N,) int64, one per point
    levels: int
    names: tuple[str, ...] = ()

    @property
    def by_class(self) -> bool:
        return bool(self.names)


class LatentView:
    """The view of posterior means (N, latent_dim) with their labels (N,) naming `class_names`, and, for a dataset
    with known factors, their value indices (N, K) named by `factor_names`. ValueError, in one line, for means that
    are not a finite (N, latent_dim) tensor or labels and factors that do not fit them."""

    def __init__(
        self,
        means: Tensor,
        labels: Tensor,
        class_names: tuple[str, ...],
        factors: Tensor | None = None,
        factor_names: tuple[str, ...] = (),
    ) -> None:
        means, labels, self.class_names = torch.as_tensor(means).float(), torch.as_tensor(labels), tuple(class_names)
        if means.ndim != 2 or len(means) == 0 or means.shape[1] == 0:
            raise ValueError(f"posterior means must be a (N, latent_dim) tensor with N >= 1, got {tuple(means.shape)}")
        if not torch.isfinite(means).all():
            raise ValueError("the posterior means are not finite (NaN or infinite): the model's encoder overflows")
        check_values("labels", labels, len(means), len(self.class_names))
        self.means, self.labels = means, labels.long()
        self.dims = top_dimensions(means)
        low, high = central_range(means)
        pad = (high - low).clamp(min=1e-6) * MARGIN
        self.low, self.high = low - pad, high + pad
        self.start = means.median(0).values
        self.class_means = {int(c): means[self.labels == c].mean(0) for c in self.labels.unique()}
        self.colourings = {"class": Colouring("class", self.labels, len(self.class_names), self.class_names)}
        self.colourings.update(factor_colourings(self.colourings["class"], factors, tuple(factor_names), len(means)))
        self.jitter = torch.rand(len(means), generator=torch.Generator().manual_seed(SEED)) * 2 * JITTER - JITTER

    @classmethod
    def of(cls, means: Tensor, data: Dataset) -> LatentView:
        """The view of a dataset's test images, given their posterior means."""
        return cls(means, data.test_labels, data.class_names, data.test_factors, data.factor_names)

    def __len__(self) -> int:
        return len(self.means)

    @property
    def latent_dim(self) -> int:
        return self.means.shape[1]

    def ranges(self, dims: list[int] | None = None) -> list[list[float]]:
        """[low, high] of each coordinate of `dims` (default: all)."""
        dims = list(range(self.latent_dim)) if dims is None else dims
        return [[self.low[d].item(), self.high[d].item()] for d in dims]

    def strip(self) -> Tensor:
        """Where a strip plot puts each point across: its class's row, plus the jitter."""
        return self.labels.float() + self.jitter

    def colouring(self, name: str) -> Colouring:
        """The colouring of this name (a key of `colourings`); ValueError naming the choices."""
        if name not in self.colourings:
            raise ValueError(f"no colouring {name!r}; choose one of {', '.join(self.colourings)}")
        return self.colourings[name]


def check_values(name: str, values: Tensor, n: int, levels: int) -> None:
    """ValueError unless `values` are n integers in 0 .. levels - 1."""
    if len(values) != n:
        raise ValueError(f"{len(values)} {name} for {n} posterior means: give one per test image")
    if values.is_floating_point() or values.ndim != 1 or not 0 <= int(values.min()) <= int(values.max()) < levels:
        raise ValueError(f"{name} must be integers from 0 to {levels - 1}, one per posterior mean")


def factor_colourings(
    by_class: Colouring, factors: Tensor | None, names: tuple[str, ...], n: int
) -> dict[str, Colouring]:
    """A colouring per known factor, by its value indices; the factor that is the class (the shapes' shape) names
    the class colouring instead (kept under the key "class")."""
    if factors is None:
        return {}
    factors = torch.as_tensor(factors)
    if factors.ndim != 2 or factors.shape != (n, len(names)) or factors.is_floating_point():
        raise ValueError(f"factors must be integer value indices (N, {len(names)}) for {n} posterior means")
    found = {}
    for k, name in enumerate(names):
        values = factors[:, k].long()
        if torch.equal(values, by_class.values):
            found["class"] = Colouring(f"class ({name})", by_class.values, by_class.levels, by_class.names)
        else:
            check_values(f"{name} values", values, n, 256)  # the web page packs them as bytes
            found[name] = Colouring(name, values, int(values.max()) + 1)
    return found


def as_view(view: LatentView | Tensor, labels: Tensor | None = None, class_names: tuple[str, ...] = ()) -> LatentView:
    """A LatentView as given, or the view of posterior means with their labels and class names (the notebooks'
    calls, LatentExplorer(model, means, labels, class_names, images), pass these)."""
    if isinstance(view, LatentView):
        return view
    if labels is None or not class_names:
        raise TypeError("give a LatentView, or posterior means with their labels and class names")
    return LatentView(view, labels, class_names)

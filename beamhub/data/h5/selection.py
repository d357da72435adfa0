"""A NumPy-style selection of an HDF5 dataset (h5grove's `selection`, e.g. "0, 10:20, ::2"), read block by block.

A selection may name gigabytes; it is read in blocks of at most BLOCK_BYTES (a row is cut when one
row is larger), each block an h5py hyperslab read of its own, so memory stays bounded whatever the
dataset and the selection. The blocks follow the result's C order: their bytes, one after the other,
are the bytes of the whole selection.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import h5py
import numpy as np
from h5grove.utils import parse_slice

from beamhub.errors import Invalid

BLOCK_BYTES = 4 * 1024 * 1024
Index = tuple[int | slice, ...]


@dataclass(frozen=True)
class Axis:
    """One dimension of a selection: `count` indices from `start` by `step`; an integer index drops the axis."""

    start: int
    step: int
    count: int
    kept: bool

    def index(self, first: int = 0, stop: int | None = None) -> int | slice:
        """This axis's h5py index, narrowed to the selected positions [first, stop)."""
        if not self.kept:
            return self.start
        stop = self.count if stop is None else stop
        if stop <= first:
            return slice(self.start, self.start)
        return slice(self.start + first * self.step, self.start + (stop - 1) * self.step + 1, self.step)


@dataclass(frozen=True)
class Selection:
    """A parsed selection of a dataset of a known shape."""

    axes: tuple[Axis, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of what it selects."""
        return tuple(axis.count for axis in self.axes if axis.kept)

    @property
    def size(self) -> int:
        """How many elements it selects."""
        return math.prod(self.shape)

    def whole(self) -> Index:
        """The h5py index of all of it."""
        return tuple(axis.index() for axis in self.axes)

    def blocks(self, itemsize: int, budget: int = BLOCK_BYTES) -> Iterator[Index]:
        """h5py indices of consecutive blocks of at most `budget` bytes (one element at least), in C order."""
        if self.size == 0:
            return
        shape = self.shape
        split = next((k for k in range(len(shape) + 1) if math.prod(shape[k:]) * itemsize <= budget), len(shape))
        if split == 0:
            yield self.whole()
            return
        kept = [i for i, axis in enumerate(self.axes) if axis.kept]
        rows = max(1, budget // (math.prod(shape[split:]) * itemsize))
        for outer in itertools.product(*(range(n) for n in shape[:split - 1])):
            for first in range(0, shape[split - 1], rows):
                yield self._block(kept, split, outer, first, min(first + rows, shape[split - 1]))

    def _block(self, kept: list[int], split: int, outer: tuple[int, ...], first: int, stop: int) -> Index:
        """Positions `outer` on the kept axes before the split one, [first, stop) on it, all of the rest."""
        fixed = {kept[k]: self.axes[kept[k]].start + position * self.axes[kept[k]].step
                 for k, position in enumerate(outer)}
        cut = kept[split - 1]
        return tuple(fixed[i] if i in fixed else axis.index(first, stop) if i == cut else axis.index()
                     for i, axis in enumerate(self.axes))


def parse_selection(text: str | None, shape: tuple[int, ...]) -> Selection:
    """The selection `text` of a dataset of `shape` (None: all of it); Invalid if it does not fit the shape."""
    try:
        members = parse_slice(text) if text not in (None, "") else ()
    except (TypeError, ValueError):
        raise Invalid("not a selection: %(text)r (e.g. '0, 10:20, ::2')", text=text) from None
    if len(members) > len(shape):
        raise Invalid("%(text)s has too many members to slice a %(dimensions)sD dataset",
                      text=text, dimensions=len(shape))
    members += (slice(None),) * (len(shape) - len(members))
    return Selection(tuple(_axis(member, size) for member, size in zip(members, shape, strict=True)))


def _axis(member: int | slice, size: int) -> Axis:
    if isinstance(member, int):
        position = member + size if member < 0 else member
        if not 0 <= position < size:
            raise Invalid("index %(member)s is out of range for an axis of %(size)s", member=member, size=size)
        return Axis(position, 1, 1, kept=False)
    if member.step is not None and member.step <= 0:
        raise Invalid("a selection's step must be positive")
    start, stop, step = member.indices(size)
    return Axis(start, step, len(range(start, stop, step)), kept=True)


def read_blocks(dataset: h5py.Dataset, selection: Selection, budget: int = BLOCK_BYTES) -> Iterator[np.ndarray]:
    """The selected values of the dataset, block by block, each block read from the file when it is asked for."""
    for index in selection.blocks(dataset.dtype.itemsize, budget):
        yield np.asarray(dataset[index])

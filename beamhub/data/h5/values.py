"""A dataset's values as h5grove 4's `/data` and `/stats` give them, in bounded memory.

bin, npy and csv are streamed: read and encoded a block at a time (h5_select), so a slice of
any size costs a few megabytes; a bin selection of one block at most is answered as that block's
buffer (no copy, nothing to stream). json and tiff need the whole selection at once: they are refused
past WHOLE_BYTES (select less, or ask for bin/npy/csv). /stats folds the blocks into running sums.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import h5py
import numpy as np
from h5grove.encoders import orjson_encode, tiff_encode
from h5grove.utils import QueryArgumentError, convert, is_numeric_data

from beamhub.data.h5.selection import BLOCK_BYTES, Selection, parse_selection, read_blocks
from beamhub.errors import Invalid

WHOLE_BYTES = 64 * 1024 * 1024
FORMATS = ("json", "bin", "npy", "csv", "tiff")
_DOWNLOADS = {"npy": ("application/octet-stream", "data.npy"), "csv": ("text/csv", "data.csv"),
              "tiff": ("image/tiff", "data.tiff")}


@dataclass
class Body:
    """An encoded answer: its media type, its headers, and its bytes (all at once or a chunk at a time)."""

    media_type: str
    content: bytes | memoryview | Iterator[bytes]
    headers: dict[str, str] = field(default_factory=dict)


def encode_values(dataset: h5py.Dataset, text: str | None, fmt: str, dtype: str, flatten: bool) -> Body:
    """The values `text` selects of `dataset`, converted per `dtype` (origin|safe), encoded as `fmt`."""
    if fmt not in FORMATS:
        raise Invalid("format must be one of %(formats)s", formats=', '.join(FORMATS))
    out = _converted_dtype(dataset.dtype, dtype)
    if dataset.shape is None:
        if fmt != "json":
            raise Invalid("an empty dataset has no values to encode but as json (null)")
        return Body("application/json", orjson_encode(None))
    selection = parse_selection(text, dataset.shape)
    shape = (selection.size,) if flatten else selection.shape
    if fmt == "json":
        return Body("application/json", orjson_encode(_whole(dataset, selection, dtype, flatten, fmt)))
    if out.hasobject:
        raise Invalid("format %(fmt)s is for fixed-size values; ask json for variable-length ones", fmt=fmt)
    blocks = (_convert(block, dtype) for block in read_blocks(dataset, selection))
    if fmt == "bin":
        size = selection.size * out.itemsize
        content = _one_buffer(blocks) if size <= BLOCK_BYTES else (block.tobytes() for block in blocks)
        return Body("application/octet-stream", content, {"content-length": str(size)})
    if not is_numeric_data(np.empty(0, out)):
        raise Invalid("Unsupported encoding %(fmt)s for non-numeric content", fmt=fmt)
    if fmt == "npy":
        return _download("npy", _npy(out, shape, blocks))
    if not shape:
        raise Invalid("Unsupported encoding %(fmt)s for empty and scalar datasets", fmt=fmt)
    if fmt == "csv":
        if len(shape) > 2 or out.kind == "c":
            raise Invalid("format csv takes one or two dimensions of real numbers")
        return _download("csv", _csv(shape, blocks))
    return _download("tiff", tiff_encode(_whole(dataset, selection, dtype, flatten, fmt)))


def _one_buffer(blocks: Iterator[np.ndarray]) -> memoryview:
    """The bytes of a selection of at most BLOCK_BYTES, as one buffer (the block itself when it is one)."""
    arrays = [np.ascontiguousarray(block).reshape(-1).view(np.uint8) for block in blocks]
    return memoryview(arrays[0] if len(arrays) == 1 else np.concatenate(arrays or [np.empty(0, np.uint8)]))


def _converted_dtype(source: np.dtype, dtype: str) -> np.dtype:
    """The dtype values are sent in; Invalid for an unknown conversion or `safe` on non-numeric data."""
    return _convert(np.empty(0, source), dtype).dtype


def _convert(array: np.ndarray, dtype: str) -> np.ndarray:
    try:
        return convert(array, dtype)
    except QueryArgumentError as error:
        raise Invalid(str(error)) from None


def _whole(dataset: h5py.Dataset, selection: Selection, dtype: str, flatten: bool, fmt: str) -> object:
    """All the selected values at once, if they are at most WHOLE_BYTES."""
    if selection.size * dataset.dtype.itemsize > WHOLE_BYTES:
        raise Invalid("%(size)s bytes selected: format %(fmt)s answers at most %(whole_bytes)s; select less, or ask "
                      "bin, npy or csv (streamed)",
                      size=selection.size * dataset.dtype.itemsize, fmt=fmt, whole_bytes=WHOLE_BYTES)
    values = dataset[selection.whole()]
    if not isinstance(values, np.ndarray | np.generic):
        return values
    values = _convert(values, dtype)
    return np.ravel(values) if flatten and isinstance(values, np.ndarray) else values


def _download(fmt: str, content: bytes | Iterator[bytes]) -> Body:
    media_type, filename = _DOWNLOADS[fmt]
    return Body(media_type, content, {"content-disposition": f'attachment; filename="{filename}"'})


def _npy(dtype: np.dtype, shape: tuple[int, ...], blocks: Iterator[np.ndarray]) -> Iterator[bytes]:
    """An .npy file: its header, then the values in C order."""
    header = io.BytesIO()
    np.lib.format.write_array_header_2_0(header, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                  "fortran_order": False, "shape": shape})
    yield header.getvalue()
    for block in blocks:
        yield block.tobytes()


def _csv(shape: tuple[int, ...], blocks: Iterator[np.ndarray]) -> Iterator[bytes]:
    """np.savetxt's text of a 1-D (a value a line) or 2-D selection, whatever the blocks' cuts."""
    width = shape[-1] if len(shape) == 2 else 1
    done = 0
    for block in blocks:
        flat = np.ravel(block)
        if done % width == 0 and flat.size % width == 0:
            text = io.BytesIO()
            np.savetxt(text, flat.reshape(-1, width), delimiter=",")
            yield text.getvalue()
        else:
            ends = (np.arange(done, done + flat.size) + 1) % width == 0
            yield "".join(f"{value:.18e}{chr(10) if end else ','}" for value, end in zip(flat, ends, strict=True)
                          ).encode()
        done += flat.size


def statistics(dataset: h5py.Dataset, text: str | None) -> dict[str, int | float | None]:
    """h5grove's /stats of the selection: minima, maximum, mean and standard deviation of its finite values."""
    if dataset.shape is None or not is_numeric_data(np.empty(0, dataset.dtype)) or dataset.dtype.kind == "c":
        raise Invalid("statistics are for real numbers")
    running = _Running()
    for block in read_blocks(dataset, parse_selection(text, dataset.shape)):
        values = np.ravel(block)
        running.add(values[np.isfinite(values)] if values.dtype.kind == "f" else values)
    cast = float if dataset.dtype.kind == "f" else int
    return running.result(cast)


class _Running:
    """Minima, maximum, count, mean and sum of squared deviations, merged block by block (Chan et al.)."""

    def __init__(self) -> None:
        self.count, self.mean, self.m2 = 0, 0.0, 0.0
        self.low: float | None = None
        self.high: float | None = None
        self.positive: float | None = None
        self.strict_positive: float | None = None

    def add(self, values: np.ndarray) -> None:
        if values.size == 0:
            return
        wide = values.astype(np.float64)
        mean, m2, count = float(wide.mean()), float(((wide - wide.mean()) ** 2).sum()), values.size
        delta, total = mean - self.mean, self.count + count
        self.m2 += m2 + delta * delta * self.count * count / total
        self.mean += delta * count / total
        self.count = total
        self.low = _least(self.low, values.min())
        self.high = values.max() if self.high is None else max(self.high, values.max())
        self.positive = _least(self.positive, _min_or_none(values[values >= 0]))
        self.strict_positive = _least(self.strict_positive, _min_or_none(values[values > 0]))

    def result(self, cast: type) -> dict[str, int | float | None]:
        def out(value: object) -> int | float | None:
            return None if value is None else cast(value)

        if self.count == 0:
            return dict.fromkeys(("strict_positive_min", "positive_min", "min", "max", "mean", "std"))
        return {"strict_positive_min": out(self.strict_positive), "positive_min": out(self.positive),
                "min": out(self.low), "max": out(self.high), "mean": out(self.mean),
                "std": out(math.sqrt(self.m2 / self.count))}


def _min_or_none(values: np.ndarray) -> object:
    return values.min() if values.size else None


def _least(current: object, candidate: object) -> object:
    if candidate is None:
        return current
    return candidate if current is None else min(current, candidate)  # type: ignore[call-overload]

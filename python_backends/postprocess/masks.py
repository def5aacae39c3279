"""Instance masks of a segmentation head at the original image's size, and their COCO RLE.

The masks are Ultralytics' ``predict(retina_masks=True)`` masks (``ops.process_mask_native``): each
detection's logits ``coefficients @ prototypes`` are upsampled bilinearly (align_corners=False) by the
smallest factor f in {1, 2, 4} that puts the letterbox's padding on whole pixels, the padding is cut off,
the rest is resized bilinearly to the original image, thresholded at 0 (sigmoid 0.5) and cut to the box
(pixel columns x1 <= x < x2, rows y1 <= y < y2). Bilinear resizing is separable, so both resizes and the
crop are one (rows, prototype rows) and one (columns, prototype columns) weight matrix per image, and each
mask is computed only inside its box, from the prototypes under it: ``rows @ logits @ columns.T``.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

MASK_COEFFICIENTS = 32  # Ultralytics' Segment head: mask coefficients per anchor, prototypes per image
PROTO_STRIDE = 4  # the prototypes are a quarter of the network input's height and width


def bilinear_taps(source: int, target: int, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A bilinear resize ``source`` → ``target`` pixels along one axis (PyTorch's ``interpolate(mode="bilinear",
    align_corners=False)``) at the target pixels ``positions``: each one's two source pixels, int64 (n,) each,
    and the second one's weight, float32 (n,)."""
    where = np.maximum((positions.astype(np.float64) + 0.5) * (source / target) - 0.5, 0.0)
    first = np.minimum(where.astype(np.int64), source - 1)
    return first, np.minimum(first + 1, source - 1), (where - first).astype(np.float32)


def bilinear_weights(source: int, target: int, positions: np.ndarray) -> np.ndarray:
    """float32 (len(positions), source): ``bilinear_taps`` as a matrix, each row a target pixel's weights."""
    first, second, step = bilinear_taps(source, target, positions)
    rows = np.arange(len(positions)) * source
    cells = np.concatenate([rows + first, rows + second])
    weights = np.bincount(cells, np.concatenate([1 - step, step]), minlength=len(positions) * source)
    return weights.astype(np.float32).reshape(len(positions), source)


def upsample_factor(proto_hw: tuple[int, int], image_hw: tuple[int, int]) -> int:
    """1, 2 or 4: the smallest upsampling of the prototypes that puts the letterbox's padding on whole pixels."""
    (mh, mw), (h, w) = proto_hw, image_hw
    gain = min(PROTO_STRIDE * mh / h, PROTO_STRIDE * mw / w)
    pad = (PROTO_STRIDE * mh - max(round(h * gain), 1)) | (PROTO_STRIDE * mw - max(round(w * gain), 1))
    return 4 // math.gcd(4, pad | pad // 2)


@functools.lru_cache(maxsize=16)  # a camera's frames share one size
def axis_weights(proto_hw: tuple[int, int], image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """float32 (h, mh) and (w, mw): each original-image row's and column's weights over the prototypes' rows
    and columns: upsample by ``upsample_factor``, cut the padding, resize to the image (``scale_masks``).
    Cached: the arrays are shared, read them only."""
    (mh, mw), (h, w) = proto_hw, image_hw
    f = upsample_factor(proto_hw, image_hw)
    gain = min(f * mh / h, f * mw / w)
    pad_w, pad_h = (f * mw - max(round(w * gain), 1)) / 2, (f * mh - max(round(h * gain), 1)) / 2
    top, left = round(pad_h - 0.1), round(pad_w - 0.1)
    bottom, right = top + max(round(h * gain), 1), left + max(round(w * gain), 1)
    weights = []
    for proto, start, stop, size in ((mh, top, bottom, h), (mw, left, right, w)):
        upsampled = bilinear_weights(proto, f * proto, np.arange(start, stop))  # (content, proto)
        first, second, step = bilinear_taps(stop - start, size, np.arange(size))
        weights.append((1 - step)[:, None] * upsampled[first] + step[:, None] * upsampled[second])
    return weights[0], weights[1]


class BoxMask(NamedTuple):
    """One detection's mask inside its box, at (top, left) in the image.

    ``by_column``: bool (columns, rows + 2), the box's pixels column by column (COCO's order) between a zero
    above and a zero below each column, so that runs are found in one pass (``rle_counts``).
    """

    top: int
    left: int
    by_column: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """bool (rows, columns): the box's pixels (a view)."""
        return self.by_column[:, 1:-1].T


def box_span(low: float, high: float, size: int) -> tuple[int, int]:
    """The pixels p with low <= p < high, clipped to [0, size): (first, stop)."""
    return min(max(math.ceil(low), 0), size), min(max(math.ceil(high), 0), size)


def box_masks(
    prototypes: np.ndarray, coefficients: np.ndarray, boxes: np.ndarray, image_hw: tuple[int, int]
) -> list[BoxMask]:
    """Each detection's mask inside its box.

    Args:
        prototypes: float32 (32, mh, mw), the head's second output for this image.
        coefficients: float32 (N, 32), the detections' mask coefficients.
        boxes: float32 (N, 4) x1, y1, x2, y2 in original-image pixels.
        image_hw: the original image's height and width.

    Returns:
        N BoxMask, in the order of ``boxes``.
    """
    channels, mh, mw = prototypes.shape
    row_weights, column_weights = axis_weights((mh, mw), image_hw)
    (row_first, row_stop), (column_first, column_stop) = axis_spans((mh, mw), image_hw)
    logits = (coefficients @ prototypes.reshape(channels, -1)).reshape(-1, mh, mw)
    found = []
    for logit, (x1, y1, x2, y2) in zip(logits, boxes):
        (top, bottom), (left, right) = box_span(y1, y2, image_hw[0]), box_span(x1, x2, image_hw[1])
        if right > left and bottom > top:
            r0, r1, c0, c1 = row_first[top], row_stop[bottom - 1], column_first[left], column_stop[right - 1]
            by_row = np.zeros((bottom - top + 2, c1 - c0), np.float32)  # a zero row above and below the box
            np.matmul(row_weights[top:bottom, r0:r1], logit[r0:r1, c0:c1], out=by_row[1:-1])
            by_column = column_weights[left:right, c0:c1] @ by_row.T > 0  # contiguous, zero above and below
        else:
            by_column = np.zeros((right - left, bottom - top + 2), bool)
        found.append(BoxMask(top, left, by_column))
    return found


@functools.lru_cache(maxsize=16)
def axis_spans(proto_hw: tuple[int, int], image_hw: tuple[int, int]) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The prototype rows, then columns, that each original-image row (column) of ``axis_weights`` uses: int64
    (h,) first and (h,) stop, then (w,) first and (w,) stop. Both nondecreasing (bilinear taps move forward with
    the pixel), so rows top to bottom - 1 use prototype rows first[top] to stop[bottom - 1]. Cached: read them only."""
    spans = []
    for weights in axis_weights(proto_hw, image_hw):
        used = weights != 0
        spans.append((used.argmax(axis=1), weights.shape[1] - used[:, ::-1].argmax(axis=1)))
    return tuple(spans)


def rle_counts(box: BoxMask, image_hw: tuple[int, int]) -> np.ndarray:
    """int64 run lengths of ``box``'s mask in an image of ``image_hw``, in COCO's order: column by column, zeros
    first (a mask that starts with a set pixel starts with a zero-length run)."""
    height, width = image_hw
    top, left, by_column = box
    rows = by_column.shape[1]
    flat = by_column.reshape(-1)
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1  # where each flip lands in by_column, in order
    flips = np.empty(len(changes) + 2, np.int64)  # 0, the flips in the image's order (increasing), the pixel count
    flips[0], flips[-1] = 0, height * width
    inner = flips[1:-1]
    np.floor_divide(changes, rows, out=inner)  # the column
    inner *= height - rows
    inner += changes
    inner += left * height + top - 1
    if rows - 2 == height and len(changes):
        # a run that ends at a column's bottom and goes on at the next one's top flips twice at one pixel: no flip
        twice = np.flatnonzero(inner[1:] == inner[:-1]) + 1
        flips = np.delete(flips, np.concatenate([twice, twice + 1]))
    if len(flips) > 2 and flips[-2] >= height * width:  # a run to the image's last pixel ends there, not past it
        flips = np.delete(flips, -2)
    return np.diff(flips)


def _coco_chars(values: np.ndarray) -> np.ndarray:
    """uint8 (n, CHAR_WIDTH): each int64 value of (n,) in COCO's characters, zeros after its last one: the value
    in the fewest 5-bit groups that hold it in two's complement, least significant first, ``0x20`` on all but
    the last, plus 48."""
    magnitude = values ^ (values >> 63)  # x, or -x - 1 for a negative x: its bits but the sign
    groups = np.ones(len(values), np.int64)
    limit = 16  # a value needs another group from 2^(5k + 4) on: k groups of 5 bits hold the sign and 5k - 1 more
    while (more := magnitude >= limit).any():
        groups += more
        limit <<= 5
    k = np.arange(CHAR_WIDTH)
    chars = ((values[:, None] >> 5 * k) & 0x1F) + np.where(k < groups[:, None] - 1, 0x20 + 48, 48)
    return np.where(k < groups[:, None], chars, 0).astype(np.uint8)


CHAR_WIDTH = 8  # characters a value may take: 8 groups hold 39 bits, more than any image's pixel count needs
TABLE_REACH = 1 << 14  # values in [-2^14, 2^14) (at most 3 characters) are looked up, not computed
# uint64 (2 * TABLE_REACH,): the characters of value v - TABLE_REACH as 8 bytes, zeros after the last one
CHAR_TABLE = _coco_chars(np.arange(-TABLE_REACH, TABLE_REACH)).view(np.uint64).reshape(-1)
# uint64 (2^15,): 15 low bits of a value beyond the table, in three characters that all say more follow
LOW_CHARS = sum(
    ((np.arange(1 << 15) >> 5 * k & 0x1F) + 0x20 + 48).astype(np.uint64) << np.uint64(8 * k) for k in range(3)
)


def _table_chars(values: np.ndarray) -> np.ndarray:
    """uint64 (n,): each int64 value of (n,) in COCO's characters as 8 bytes (``_coco_chars``), looked up in
    ``CHAR_TABLE``; a value beyond it is its 15 low bits' ``LOW_CHARS`` and then the rest's characters."""
    index = values + TABLE_REACH
    far = np.flatnonzero(index.astype(np.uint64) >= 2 * TABLE_REACH)  # a negative index wraps to a huge one
    index[far] = 0
    chars = CHAR_TABLE[index]
    if len(far):
        rest = values[far]
        chars[far] = LOW_CHARS[rest & 0x7FFF] | _table_chars(rest >> 15) << np.uint64(24)
    return chars


def rle_strings(runs: list[np.ndarray]) -> list[bytes]:
    """COCO's compressed RLE ``counts`` of each run-length list (pycocotools' ``rleToString``), all encoded at once:
    from the fourth run on, each run less the one two before, in characters (``_table_chars``)."""
    if not runs:
        return []
    per_mask = np.array([len(counts) for counts in runs])
    ends = np.cumsum(per_mask)
    counts = np.concatenate(runs).astype(np.int64)
    values = counts.copy()
    values[3:] -= counts[1:-2]
    first = (ends - per_mask)[:, None] + np.arange(3)  # each list's first three runs go as they are
    first = first[first < ends[:, None]]
    values[first] = counts[first]
    chars = _table_chars(values)  # each value's characters, then zeros (only 48 and up are characters)
    cuts = [0, *ends.tolist()]
    return [chars[start:stop].tobytes().translate(None, b"\0") for start, stop in zip(cuts[:-1], cuts[1:])]


def rle_string(counts: np.ndarray) -> bytes:
    """``rle_strings`` of one run-length list."""
    return rle_strings([counts])[0]


def encode_masks(found: list[BoxMask], image_hw: tuple[int, int]) -> list[bytes]:
    """Each box mask of ``box_masks`` as the COCO compressed RLE of its full-image mask (height x width)."""
    return rle_strings([rle_counts(box, image_hw) for box in found])

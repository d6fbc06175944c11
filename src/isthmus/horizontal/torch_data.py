"""A party's data as PyTorch datasets read piece by piece: tables in chunks, image folders file by file.

:class:`TableStream` streams a CSV (``chunk_rows`` rows at a time) or a Parquet file (one row group
at a time) as an ``IterableDataset``, so a client trains on a table larger than its memory; each
chunk passes the same checks as :func:`~isthmus.data.table.read_table` (numeric cells, no missing
or infinite values), with errors naming the file. :class:`ImageFolder` reads class-per-subfolder
images with Pillow only when a batch asks for them. Either plugs into
:class:`~isthmus.horizontal.torch_model.TorchClient` as ``train=`` or ``test=``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from isthmus.data.table import CSV_SUFFIXES, NPZ_SUFFIXES, checked_label, checked_matrix, reader_for, select_columns
from isthmus.errors import ConfigError, DataError

try:
    import torch
    from torch.utils.data import Dataset, IterableDataset
except ImportError:  # pragma: no cover - exercised only without the extra
    torch = None
    Dataset = IterableDataset = object

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
#: An image larger than this many pixels is refused before it is decoded (a decompression bomb).
MAX_IMAGE_PIXELS = 1 << 24


def _need_torch() -> None:
    if torch is None:
        raise ConfigError("streamed datasets need PyTorch: pip install 'isthmus[torch]'")


def _targets(label: np.ndarray, task: str) -> Any:
    """Class indices as int64 (for cross-entropy), other targets as float32."""
    return torch.as_tensor(label.astype(np.int64 if task == "multiclass" else np.float32))


class TableStream(IterableDataset):
    """``(input, target)`` pairs of a CSV or Parquet table, read ``chunk_rows`` rows (CSV) or one row group
    (Parquet) at a time; each input reshaped to ``input_shape`` (a vector of the features by default).

    Every pass (epoch) shuffles the rows inside each chunk and, for Parquet, the order of the row
    groups, from ``seed`` and the pass number, so epochs differ and reruns repeat. Memory holds one
    chunk; the whole table is never loaded.
    """

    def __init__(self, path: str | Path, *, label_column: str, id_column: str = "id",
                 feature_columns: list[str] | None = None, input_shape: tuple[int, ...] | None = None,
                 task: str = "binary", chunk_rows: int = 4096, seed: int = 0, party: str = "local"):
        _need_torch()
        if chunk_rows < 1:
            raise ConfigError(f"chunk_rows must be at least 1, got {chunk_rows}")
        self.path = Path(path)
        self.party, self.task, self.chunk_rows, self.seed = party, task, chunk_rows, seed
        if not self.path.is_file():
            raise self._fail("no such file")
        reader = reader_for(self.path, self._fail)
        if self.path.name.lower().endswith(NPZ_SUFFIXES):
            raise self._fail("an .npz archive is read whole (numpy has no partial reads); stream CSV or Parquet")
        self.selection = select_columns(reader.columns(), id_column, label_column, feature_columns, [],
                                         self._fail)
        self.label_column = label_column
        self.input_shape = tuple(input_shape or (len(self.selection.features),))
        if math.prod(self.input_shape) != len(self.selection.features):
            raise ConfigError(f"input_shape {list(self.input_shape)} holds {math.prod(self.input_shape)} values but "
                              f"{self.path.name} has {len(self.selection.features)} feature columns")
        self._passes = 0

    def _fail(self, message: str) -> DataError:
        return DataError(f"party {self.party!r}, file {str(self.path)!r}: {message}")

    def _frames(self, rng: np.random.Generator) -> Iterator[Any]:
        """The table's chunks as pandas frames of the selected columns."""
        import pandas as pd

        columns = self.selection.columns
        try:
            if self.path.name.lower().endswith(CSV_SUFFIXES):
                yield from pd.read_csv(self.path, usecols=columns, dtype={self.selection.id_column: str},
                                       chunksize=self.chunk_rows)
                return
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(self.path)
            for group in rng.permutation(parquet.num_row_groups):
                yield parquet.read_row_group(int(group), columns=columns).to_pandas()
        except DataError:
            raise
        except Exception as exc:  # pandas ParserError, pyarrow ArrowInvalid, OSError ...
            raise self._fail(f"cannot be read: {exc}") from None

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        rng = np.random.default_rng([self.seed, self._passes])
        self._passes += 1
        for frame in self._frames(rng):
            features = checked_matrix(frame, self.selection.features, "features", allow_nan=False, fail=self._fail)
            label = checked_label(frame, self.label_column, self._fail)
            order = rng.permutation(len(frame))
            inputs = torch.as_tensor(features[order].astype(np.float32).reshape(len(frame), *self.input_shape))
            yield from zip(inputs, _targets(label[order], self.task))


class ImageFolder(Dataset):
    """Images under ``root/<class name>/`` as ``(tensor of input_shape, class index)``, decoded on demand.

    Classes are the subfolder names in sorted order (or ``classes``, which must all exist). Each image
    is converted to grey (``input_shape[0] == 1``) or RGB (3), must measure exactly ``input_shape``'s
    height and width (no silent resizing), and is scaled to [0, 1]. Needs Pillow.
    """

    def __init__(self, root: str | Path, input_shape: tuple[int, int, int], *, classes: list[str] | None = None):
        _need_torch()
        try:
            from PIL import Image
        except ImportError:
            raise ConfigError("image folders are read with Pillow: pip install pillow") from None
        self._image = Image
        self.root = Path(root)
        if len(input_shape) != 3 or input_shape[0] not in (1, 3):
            raise ConfigError(f"input_shape must be [channels (1 or 3), height, width], got {list(input_shape)}")
        self.input_shape = tuple(input_shape)
        if not self.root.is_dir():
            raise DataError(f"image folder {str(self.root)!r} does not exist")
        found = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        self.classes = list(classes) if classes is not None else found
        missing = sorted(set(self.classes) - set(found))
        if missing:
            raise DataError(f"image folder {str(self.root)!r} lacks the class folder(s) {missing}")
        self.samples = [(path, index) for index, name in enumerate(self.classes)
                        for path in sorted((self.root / name).iterdir()) if path.suffix.lower() in IMAGE_SUFFIXES]
        if not self.samples:
            raise DataError(f"image folder {str(self.root)!r} holds no images ({', '.join(IMAGE_SUFFIXES)}) "
                            "in class subfolders")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        path, label = self.samples[index]
        channels, height, width = self.input_shape
        try:
            with self._image.open(path) as image:
                if image.width * image.height > MAX_IMAGE_PIXELS:
                    raise DataError(f"image {str(path)!r} has {image.width}x{image.height} pixels, over the "
                                    f"{MAX_IMAGE_PIXELS:,} allowed")
                if (image.height, image.width) != (height, width):
                    raise DataError(f"image {str(path)!r} is {image.width}x{image.height} but input_shape wants "
                                    f"{width}x{height}")
                pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255.0
        except DataError:
            raise
        except Exception as exc:  # PIL.UnidentifiedImageError, OSError of a truncated file ...
            raise DataError(f"image {str(path)!r} cannot be read: {exc}") from None
        pixels = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
        return torch.as_tensor(np.ascontiguousarray(pixels)), torch.tensor(label, dtype=torch.int64)

"""Streamed datasets: tables read in chunks / row groups, image folders decoded per item."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from isthmus.data.table import read_table
from isthmus.errors import DataError

torch = pytest.importorskip("torch")

from isthmus.horizontal.torch_data import ImageFolder, TableStream  # noqa: E402


def _table(rows: int = 500, features: int = 4, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features))
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(features)])
    frame.insert(0, "id", [f"r{i:05d}" for i in range(rows)])
    frame["y"] = (X @ np.arange(1, features + 1) > 0).astype(float)
    return frame


def _pairs(stream: TableStream) -> np.ndarray:
    """One pass as a matrix [features..., label], rows in the order the stream gave them."""
    return np.array([[*x.numpy().ravel(), float(y)] for x, y in stream])


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_a_table_streams_every_row_once_per_pass_in_chunks_shuffled_per_pass(tmp_path, suffix):
    frame, path = _table(), tmp_path / f"t.{suffix}"
    if suffix == "csv":
        frame.to_csv(path, index=False)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=100)
    stream = TableStream(path, label_column="y", chunk_rows=64, input_shape=(2, 2), seed=3)
    chunks = [len(f) for f in stream._frames(np.random.default_rng(0))]
    assert chunks == ([64] * 7 + [52] if suffix == "csv" else [100] * 5)  # never the whole table at once

    whole = read_table(path, party="p", id_column="id", label_column="y")
    expected = np.column_stack([whole.features, whole.label]).astype(np.float32)
    first, second = _pairs(stream), _pairs(stream)
    key = np.lexsort(expected.T[::-1])
    for one_pass in (first, second):
        assert one_pass.shape == (500, 5)
        np.testing.assert_array_equal(one_pass[np.lexsort(one_pass.T[::-1])], expected[key])
    assert not np.array_equal(first, second)  # each pass reshuffles
    again = TableStream(path, label_column="y", chunk_rows=64, input_shape=(2, 2), seed=3)
    np.testing.assert_array_equal(_pairs(again), first)  # reruns repeat
    x, y = next(iter(stream))
    assert x.shape == (2, 2) and x.dtype == torch.float32 and y.dtype == torch.float32


def test_a_torch_client_trains_on_a_stream_and_counts_its_rows(tmp_path):
    from isthmus.horizontal import FedAvg, simulate
    from isthmus.horizontal.torch_model import TorchClient

    frame = _table(rows=600)
    paths = []
    for i, part in enumerate((frame.iloc[:300], frame.iloc[300:])):
        paths.append(tmp_path / f"client-{i}.csv")
        part.to_csv(paths[-1], index=False)

    def client(i: int) -> TorchClient:
        torch.manual_seed(0)
        module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        return TorchClient(module, lambda out, y: torch.nn.functional.binary_cross_entropy_with_logits(out[:, 0], y),
                           lambda p: torch.optim.Adam(p, lr=0.02), train=TableStream(paths[i], label_column="y",
                                                                                      chunk_rows=50, seed=i),
                           epochs=2, batch_size=16, seed=i)

    clients = [client(0), client(1)]
    fitted = clients[0].fit(clients[0].get_parameters(), {"round": 1})
    assert fitted.num_examples == 300  # counted while streaming: two epochs, reported once
    result = simulate(clients, FedAvg(), 3, secure=False)
    module = clients[0].module
    clients[0].set_parameters(result.parameters)
    X = torch.tensor(frame[["x0", "x1", "x2", "x3"]].to_numpy(np.float32))
    accuracy = ((module(X)[:, 0] > 0).numpy() == frame["y"].to_numpy().astype(bool)).mean()
    assert accuracy > 0.95


def test_a_bad_cell_in_a_later_chunk_is_named_with_its_file_and_column(tmp_path):
    frame = _table(rows=300)
    frame["x2"] = frame["x2"].astype(object)
    frame.loc[250, "x2"] = "seven"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    stream = TableStream(tmp_path / "bad.csv", label_column="y", chunk_rows=100, party="hospital-2")
    with pytest.raises(DataError, match=r"party 'hospital-2', file '.*bad.csv': column 'x2' is not numeric"):
        list(stream)
    with pytest.raises(DataError, match=r"label column 'label' not found"):
        TableStream(tmp_path / "bad.csv", label_column="label")
    np.savez(tmp_path / "t.npz", id=np.arange(3), y=np.zeros(3), x=np.ones((3, 2)))
    with pytest.raises(DataError, match="read whole"):
        TableStream(tmp_path / "t.npz", label_column="y")


def _save(path, pixels: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def test_an_image_folder_yields_each_png_scaled_with_its_class_and_refuses_a_wrong_size(tmp_path):
    pytest.importorskip("PIL")
    rng = np.random.default_rng(0)
    images = {(name, i): rng.integers(0, 256, (8, 8), dtype=np.uint8) for name in ("cat", "dog") for i in range(3)}
    for (name, i), pixels in images.items():
        _save(tmp_path / "grey" / name / f"{i}.png", pixels)
    (tmp_path / "grey" / "dog" / "notes.txt").write_text("not an image")
    folder = ImageFolder(tmp_path / "grey", (1, 8, 8))
    assert folder.classes == ["cat", "dog"] and len(folder) == 6
    for index, ((name, i), pixels) in enumerate(sorted(images.items())):
        x, y = folder[index]
        assert x.shape == (1, 8, 8) and int(y) == ["cat", "dog"].index(name)
        np.testing.assert_allclose(x.numpy()[0], pixels / 255.0, rtol=1e-6)
    batch_x, batch_y = next(iter(torch.utils.data.DataLoader(folder, batch_size=6)))
    assert batch_x.shape == (6, 1, 8, 8) and batch_y.tolist() == [0, 0, 0, 1, 1, 1]

    _save(tmp_path / "rgb" / "a" / "0.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    assert ImageFolder(tmp_path / "rgb", (3, 8, 8))[0][0].shape == (3, 8, 8)
    with pytest.raises(DataError, match=r"0.png' is 8x8 but input_shape wants 16x16"):
        ImageFolder(tmp_path / "rgb", (3, 16, 16))[0]
    with pytest.raises(DataError, match=r"lacks the class folder\(s\) \['bird'\]"):
        ImageFolder(tmp_path / "grey", (1, 8, 8), classes=["cat", "bird"])
    (tmp_path / "grey" / "cat" / "9.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(DataError, match="9.png' cannot be read"):
        ImageFolder(tmp_path / "grey", (1, 8, 8))[3]


def test_an_image_too_large_to_decode_safely_is_refused_before_decoding(tmp_path, monkeypatch):
    """A decompression bomb (a small file that decodes to gigabytes) is refused from its header alone."""
    pytest.importorskip("PIL")
    import isthmus.horizontal.torch_data as torch_data

    _save(tmp_path / "f" / "a" / "big.png", np.zeros((64, 64), dtype=np.uint8))
    monkeypatch.setattr(torch_data, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DataError, match=r"has 64x64 pixels, over the 1,000 allowed"):
        ImageFolder(tmp_path / "f", (1, 64, 64))[0]

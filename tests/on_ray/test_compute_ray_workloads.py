"""The rest of a party's heavy work on a real local Ray cluster (this package's, conftest.py): Paillier encryption
and X.T @ [[d]] by row blocks (also with a node killed mid-way), with a vertical logistic regression that learns
the same model and scores as on the local pool; binning by column and row blocks; a PSI host reading its ids per
Parquet row group or CSV chunk, and the partition that fails named."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import CountingCompute
from isthmus.compute import LocalCompute, select

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray


def as_backend(monkeypatch, compute) -> None:
    """``compute`` is this process's backend for the test, as :func:`isthmus.compute.use` makes it (without
    its check and close: the package's cluster outlives the test)."""
    from isthmus.crypto import parallel

    monkeypatch.setattr(select, "_current", compute)
    monkeypatch.setattr(parallel, "_cluster", compute if compute.remote else None)


@pytest.fixture
def on_ray(ray_compute, monkeypatch):
    """This process's backend is the cluster, and work of test size is spread (thresholds at 1 or 0)."""
    from isthmus.compute import blocks
    from isthmus.crypto import keys, multiexp

    counting = CountingCompute(ray_compute)
    monkeypatch.setattr(blocks, "CLUSTER_MIN_VALUES", 0)
    as_backend(monkeypatch, counting)
    monkeypatch.setattr(keys, "PARALLEL_MIN_ENCRYPTIONS", 1)
    monkeypatch.setattr(multiexp, "PARALLEL_MIN_PRODUCTS", 1)
    monkeypatch.setattr(multiexp, "PARALLEL_MIN_POWERS", 1)
    return counting


def test_encryption_and_weighted_sums_by_row_blocks_are_the_local_integers(on_ray, paillier_1024):
    from isthmus.crypto import multiexp

    public, private = paillier_1024
    rng = np.random.default_rng(7)
    values, X = rng.normal(size=300), rng.normal(size=(300, 12))
    encrypted = public.encrypt(values)  # random factors made by cluster tasks
    assert on_ray.tasks >= 2
    np.testing.assert_allclose(private.decrypt(encrypted), values, atol=2**-32)
    before = on_ray.tasks
    on_cluster = encrypted.rmatmul(X.T, precision=16)  # X.T @ [[v]]: tasks over row blocks, multiplied here
    assert on_ray.tasks >= before + 2
    integers = np.round(X.T * 2**16).astype(np.int64)
    local = multiexp._products(encrypted.ciphertexts(), integers, public.nsquare)
    assert on_cluster.ciphertexts() == local  # the same ciphertexts, not merely the same plaintexts


def test_a_worker_node_killed_during_x_t_d_gives_the_same_ciphertexts_or_a_clear_error(on_ray, ray_cluster,
                                                                                        ray_node_1_restarted,
                                                                                        paillier_1024):
    """Ray re-runs a lost block on the head: the product is the same integers; else a ComputeError, never a
    wrong gradient."""
    from .conftest import killing_node_1_when_busy
    from isthmus.compute import ComputeError
    from isthmus.crypto import multiexp

    public, _ = paillier_1024
    rng = np.random.default_rng(9)
    for rows in (4_000, 16_000, 64_000):  # larger until a block lands on node 1 while it is watched
        encrypted, X = public.encrypt(rng.normal(size=rows)), rng.normal(size=(rows, 10))
        with killing_node_1_when_busy(ray_cluster) as killed:
            try:
                on_cluster, error = encrypted.rmatmul(X.T, precision=16), None
            except ComputeError as exc:
                error = exc
        if killed.is_set():
            break
    assert killed.is_set(), "node 1 never ran a task"
    if error is None:
        integers = np.round(X.T * 2**16).astype(np.int64)
        assert on_cluster.ciphertexts() == multiexp._products(encrypted.ciphertexts(), integers, public.nsquare)


def test_vertical_logistic_regression_on_ray_learns_the_local_model(on_ray, monkeypatch, paillier_1024):
    """Every party's process work is on the cluster here (one backend per process), the host's included:
    its encryptions, its X.T @ [[d]] and its partial scores for the guest's predictions."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    from isthmus.algorithms.hetero_linear import LinearOptions
    from test_hetero_linear import SMALL_BATCHES, train_jointly

    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)[:300]
    y = y[:300]
    config = LinearOptions(epochs=2, batch_size=100, key_bits=1024, seed=3, batch_rows_per_feature=SMALL_BATCHES)
    scores_ray, guest_ray, hosts_ray = train_jointly(config, X[:, :10], y, [X[:, 10:]])
    assert on_ray.tasks > 0
    as_backend(monkeypatch, LocalCompute())
    scores_local, guest_local, hosts_local = train_jointly(config, X[:, :10], y, [X[:, 10:]])
    np.testing.assert_allclose(hosts_ray["host-1"].coef_, hosts_local["host-1"].coef_, rtol=0, atol=1e-9)
    np.testing.assert_allclose(guest_ray.coef_, guest_local.coef_, rtol=0, atol=1e-9)
    np.testing.assert_allclose(scores_ray, scores_local, rtol=0, atol=1e-9)
    assert np.abs(hosts_local["host-1"].coef_).max() > 1e-3  # the host did learn something


def test_binning_on_ray_gives_the_local_split_points_and_bins(on_ray, monkeypatch):
    from isthmus.ml.binning import QuantileBinner

    rng = np.random.default_rng(11)
    X = np.column_stack([rng.normal(size=3_000), rng.integers(0, 5, 3_000), np.full(3_000, 2.0),
                         rng.exponential(size=3_000), rng.normal(size=3_000)])
    X[rng.random(X.shape) < 0.05] = np.nan
    on_cluster = QuantileBinner(16).fit(X)
    binned = on_cluster.transform(X)
    assert on_ray.tasks >= 4  # column blocks for the fit, row blocks for the bins
    as_backend(monkeypatch, LocalCompute())
    local = QuantileBinner(16).fit(X)
    assert len(on_cluster.split_points_) == len(local.split_points_) == 5
    for mine, theirs in zip(on_cluster.split_points_, local.split_points_):
        np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_array_equal(binned, local.transform(X))
    assert binned.dtype == np.uint8 and (binned[np.isnan(X)] == 16).all()


def _host_file(tmp_path, kind: str, ids: list[str]):
    """The host's table (id and one feature) as small Parquet row groups or CSV chunks: several partitions."""
    import pandas as pd

    frame = pd.DataFrame({"id": ids, "x": np.arange(len(ids), dtype=np.float64)})
    if kind == "parquet":
        path = tmp_path / "host.parquet"
        frame.to_parquet(path, row_group_size=700)
    else:
        path = tmp_path / "host.csv"
        frame.to_csv(path, index=False)
    return path


def _psi_with_partitions(tmp_path, kind: str, ids: dict[str, list[str]], compute, path=None, **kwargs):
    """PSI with the host's ids read per partition of its file (written from ``ids`` unless ``path`` is given)."""
    from isthmus.data.partitions import table_partitions
    from isthmus.protocols.psi import intersect
    from isthmus.transport.local import LocalHub
    from test_psi import run_roles

    path = path or _host_file(tmp_path, kind, ids["host"])
    table = table_partitions(path, party="host", id_column="id", chunk_bytes=4_000)
    assert len(table.parts) >= 3
    hub = LocalHub(list(ids))
    roles = {"guest": lambda: intersect(hub.channel("guest", "job"), "guest", ids["guest"], compute=LocalCompute(workers=1)),
             "host": lambda: intersect(hub.channel("host", "job"), "host", table, compute=compute, **kwargs)}
    return run_roles(roles, timeout=120)


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_a_host_reading_its_ids_per_partition_on_ray_finds_the_in_memory_intersection(tmp_path, ray_compute, kind):
    from .test_compute_ray import _ids, _psi
    from test_psi import shared_ids

    ids = _ids(np.random.default_rng(5), guest=800, host=3_000, shared=500)
    ids["host"][7] = f" {ids['host'][7]} "  # canonical form applies per partition as in memory
    partitioned, errors = _psi_with_partitions(tmp_path, kind, ids, ray_compute)
    assert not errors, errors
    in_memory, errors = _psi(ids, LocalCompute())
    assert not errors, errors
    for results in (partitioned, in_memory):
        rows = shared_ids(results, ids)
        assert rows["guest"] == rows["host"]
        assert set(rows["host"]) == {f"c{i}" for i in range(500)}


def test_a_partition_that_fails_to_read_names_the_file_and_the_row_group(tmp_path, ray_compute):
    from isthmus.errors import DataError

    ids = {"guest": [f"c{i}" for i in range(100)], "host": [f"c{i}" for i in range(2_000)]}
    ids["host"][1_500] = None  # row 100 of row group 2 (700 rows a group)
    _, errors = _psi_with_partitions(tmp_path, "parquet", ids, ray_compute)
    assert isinstance(errors["host"], DataError), errors
    message = str(errors["host"])
    assert f"file {str(tmp_path / 'host.parquet')!r}, row group 2: id in row 100 is missing" in message, message
    assert isinstance(errors["guest"], DataError)  # told to stop, not left waiting


def test_a_csv_chunk_that_fails_to_read_names_the_file_and_the_chunk(tmp_path, ray_compute):
    from isthmus.errors import DataError

    ids = {"guest": [f"c{i}" for i in range(100)], "host": [f"c{i}" for i in range(2_000)]}
    path = _host_file(tmp_path, "csv", ids["host"])
    path.write_bytes(path.read_bytes().replace(b"c1500,", b"c1500\xff,"))  # not UTF-8
    _, errors = _psi_with_partitions(tmp_path, "csv", ids, ray_compute, path=path)
    message = str(errors["host"])
    assert isinstance(errors["host"], DataError) and f"file {str(path)!r}, CSV chunk " in message, message
    assert "(bytes " in message and "cannot be read: UnicodeDecodeError" in message
    assert isinstance(errors["guest"], DataError)

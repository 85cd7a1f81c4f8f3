import gzip
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import data
import fashion_mnist
from data import DATASETS, DataError, batches, load_dataset
from fashion_mnist import find_data_dir, load_split, read_idx


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write(path, payload: bytes, gz: bool = False):
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = np.array([0, 9, 3, 3, 1], dtype=np.uint8)
    suffix = ".gz" if gz else ""
    images_path = write(tmp_path / f"images{suffix}", idx_bytes(images), gz)
    labels_path = write(tmp_path / f"labels{suffix}", idx_bytes(labels), gz)
    np.testing.assert_array_equal(read_idx(images_path), images)
    loaded_images, loaded_labels = load_split(images_path, labels_path)
    np.testing.assert_array_equal(loaded_labels, labels)
    assert loaded_images.shape == (5, 28, 28)


def test_wrong_magic_names_the_file(tmp_path):
    payload = bytearray(idx_bytes(np.zeros((2, 28, 28))))
    payload[2] = 0x0D  # float32 element type
    path = write(tmp_path / "images", bytes(payload))
    with pytest.raises(DataError, match="images.*magic"):
        read_idx(path)


@pytest.mark.parametrize("cut", [1, 100, 3])
def test_truncated_file_is_an_error(tmp_path, cut):
    payload = idx_bytes(np.zeros((2, 28, 28)))
    path = write(tmp_path / "images", payload[:-cut] if cut != 3 else payload[:3])
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_trailing_bytes_are_an_error(tmp_path):
    path = write(tmp_path / "labels", idx_bytes(np.zeros(4)) + b"\x00")
    with pytest.raises(DataError, match="trailing"):
        read_idx(path)


def test_corrupt_or_truncated_gzip_is_an_error(tmp_path):
    packed = gzip.compress(idx_bytes(np.zeros((3, 28, 28))))
    for name, payload in (("cut.gz", packed[: len(packed) // 2]), ("junk.gz", b"not gzip at all")):
        with pytest.raises(DataError, match=name):
            read_idx(write(tmp_path / name, payload))


def test_label_outside_range_and_count_mismatch_are_errors(tmp_path):
    images = write(tmp_path / "images", idx_bytes(np.zeros((3, 28, 28))))
    bad_labels = write(tmp_path / "bad", idx_bytes(np.array([1, 10, 2])))
    short_labels = write(tmp_path / "short", idx_bytes(np.array([1, 2])))
    with pytest.raises(DataError, match="label 10"):
        load_split(images, bad_labels)
    with pytest.raises(DataError, match="3 images but .* 2 labels"):
        load_split(images, short_labels)
    with pytest.raises(DataError, match="expected 60000"):
        load_split(images, write(tmp_path / "ok", idx_bytes(np.array([1, 2, 3]))), count=60000)
    wrong_shape = write(tmp_path / "wide", idx_bytes(np.zeros((3, 28, 27))))
    with pytest.raises(DataError, match="28, 28"):
        load_split(wrong_shape, bad_labels)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payload=st.binary(max_size=300),
    gz=st.booleans(),
    header=st.sampled_from([b"", b"\x00\x00\x08\x01", b"\x00\x00\x08\x03"]),
)
def test_fuzzed_bytes_load_or_raise_data_error(tmp_path, payload, gz, header):
    path = write(tmp_path / ("fuzz.gz" if gz else "fuzz"), header + payload, gz=gz and len(payload) % 2 == 0)
    try:
        array = read_idx(path)
    except DataError:
        return
    assert array.dtype == np.uint8 and array.ndim in (1, 3)


def test_missing_data_gives_instructions_without_downloading(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "download_with_torchvision", lambda: pytest.fail("must not download"))
    with pytest.raises(DataError, match="FASHION_MNIST_DIR.*apt-get install dataset-fashion-mnist"):
        find_data_dir(tmp_path)
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(DataError, match=str(tmp_path)):
        find_data_dir()


def test_search_order_prefers_explicit_folder(tmp_path, monkeypatch):
    for images_name, labels_name in fashion_mnist.FILES.values():
        write(tmp_path / images_name, idx_bytes(np.zeros((1, 28, 28))))
        write(tmp_path / labels_name, idx_bytes(np.zeros(1)))
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))
    assert find_data_dir() == tmp_path
    with pytest.raises(DataError, match="expected 60000 images"):  # 1-image files are not Fashion-MNIST
        load_dataset("fashion-mnist")


def test_real_dataset_shapes_ranges_and_classes(fmnist):
    assert fmnist.train_images.shape == (60000, 1, 28, 28) and fmnist.test_images.shape == (10000, 1, 28, 28)
    assert fmnist.train_images.min() == 0.0 and fmnist.train_images.max() == 1.0
    assert torch.bincount(fmnist.train_labels).tolist() == [6000] * 10
    assert torch.bincount(fmnist.test_labels).tolist() == [1000] * 10
    assert fmnist.name == "fashion-mnist" and len(fmnist.class_names) == 10 and not fmnist.has_factors


def test_limit_and_the_tests_stand_in_for_reading_the_files(fmnist, loaded_once):
    limited = load_dataset("fashion-mnist", limit=100)
    assert limited.train_images.shape == (100, 1, 28, 28) and len(limited.test_images) == 10000
    assert torch.equal(limited.train_images, fmnist.train_images[:100])
    same = loaded_once("fashion-mnist", limit=100)  # the tests' stand-in: the same tensors, fewer test images
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(same, name), getattr(limited, name)[: len(getattr(same, name))])
    assert len(same.train_images) == 100 and len(same.test_images) == 2000
    with pytest.raises(ValueError, match="limit"):
        load_dataset("fashion-mnist", limit=0)


def test_a_dataset_is_chosen_by_name_and_an_unknown_name_is_one_line():
    assert set(DATASETS) == {"fashion-mnist", "shapes"}
    with pytest.raises(ValueError, match="unknown dataset 'mnist'; choose one of fashion-mnist, shapes"):
        load_dataset("mnist")


def test_the_shapes_dataset_trains_on_every_combination_in_a_fixed_random_order_and_tests_on_ten_thousand():
    shapes = load_dataset("shapes")
    assert shapes.train_images.shape == (70560, 1, 28, 28) and shapes.test_images.shape == (10000, 1, 28, 28)
    assert shapes.factor_names == ("shape", "scale", "orientation", "x", "y") and shapes.has_factors
    assert shapes.class_names == ("square", "ellipse", "heart")
    assert torch.equal(shapes.train_labels, shapes.train_factors[:, 0])
    rows = {tuple(row) for row in shapes.test_factors.tolist()}  # the test images are training images
    assert len(rows) == 10000 and rows <= {tuple(row) for row in shapes.train_factors.tolist()}
    again = load_dataset("shapes")
    assert torch.equal(again.test_factors, shapes.test_factors) and torch.equal(again.test_images, shapes.test_images)
    assert shapes.limited(train=5, test=3).train_factors.shape == (5, 5)
    first = shapes.train_factors[:1000]  # a random thousand: every value of every factor appears
    assert [len(first[:, k].unique()) for k in range(5)] == [3, 6, 20, 14, 14]


def test_batches_visit_every_image_once():
    images = torch.arange(10.0).view(10, 1, 1, 1)
    seen = torch.cat(list(batches(images, 3, torch.Generator().manual_seed(0)))).flatten()
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
    assert [len(b) for b in batches(images, 4, shuffle=False)] == [4, 4, 2]


def test_reading_gzipped_files_writes_no_cache(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    path = write(tmp_path / "images.gz", idx_bytes(images), gz=True)
    np.testing.assert_array_equal(read_idx(path), images)
    np.testing.assert_array_equal(read_idx(path), images)
    assert list(tmp_path.iterdir()) == [path] and not hasattr(data, "read_idx_cached")

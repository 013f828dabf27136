import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from al_runner.errors import DataError
from al_runner.tasks.classification import CropFlipNormalize
from al_runner.tasks.classification.cifar10 import load_cifar10
from al_runner.tasks.classification.imagefolder import load_imagefolder
from al_runner.tasks.classification.mnist5k import load_mnist5k


def write_tree(root, classes=("cat", "dog"), per_class=3, size=8, fmt="png"):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / c / f"{i:04d}.{fmt}")
    return root


def test_imagefolder_decodes_labels_and_pixels(tmp_path):
    root = write_tree(tmp_path / "tree")
    splits = load_imagefolder(str(root))
    assert splits.classes == ["cat", "dog"]
    assert splits.train_images.shape == (6, 3, 8, 8) and splits.train_images.dtype == torch.uint8
    assert splits.train_labels.tolist() == [0, 0, 0, 1, 1, 1]
    expected = np.array(Image.open(root / "train" / "dog" / "0001.png"))
    assert torch.equal(splits.train_images[4], torch.from_numpy(expected).permute(2, 0, 1))


def test_imagefolder_cache_is_reused_and_invalidated(tmp_path, monkeypatch):
    root = write_tree(tmp_path / "tree", fmt="jpg")
    cache = tmp_path / "cache"
    first = load_imagefolder(str(root), cache_dir=str(cache))
    assert len(list(cache.glob("imagefolder-*.pt"))) == 1
    import al_runner.tasks.classification.imagefolder as mod

    monkeypatch.setattr(mod, "decode_images", lambda *a, **k: (_ for _ in ()).throw(AssertionError("decoded again")))
    second = load_imagefolder(str(root), cache_dir=str(cache))
    assert torch.equal(first.train_images, second.train_images)
    monkeypatch.undo()
    Image.new("RGB", (8, 8)).save(root / "train" / "cat" / "9999.jpg")  # tree changed -> new cache entry
    third = load_imagefolder(str(root), cache_dir=str(cache))
    assert third.train_images.shape[0] == 7


def test_imagefolder_names_an_undecodable_file(tmp_path):
    root = write_tree(tmp_path / "tree")
    bad = root / "train" / "dog" / "0002.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match="0002.png"):
        load_imagefolder(str(root))


def test_imagefolder_missing_root_and_split(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        load_imagefolder(str(tmp_path / "nowhere"))
    (tmp_path / "tree" / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="test"):
        load_imagefolder(str(tmp_path / "tree"))


def test_imagefolder_size_mismatch_names_file_and_resize_fixes_it(tmp_path):
    root = write_tree(tmp_path / "tree")
    Image.new("RGB", (10, 6)).save(root / "train" / "dog" / "0005.png")
    with pytest.raises(DataError, match="0005.png.*image_size"):
        load_imagefolder(str(root))
    assert load_imagefolder(str(root), image_size=8).train_images.shape[1:] == (3, 8, 8)


def write_cifar_batches(root, n_per_batch=4):
    """The real `cifar-10-batches-py` pickle layout, tiny."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": [int(x) for x in rng.integers(0, 10, n_per_batch)]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(
            {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]},
            f,
        )
    return folder


def test_cifar10_loader_reads_the_real_on_disk_format(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    write_cifar_batches(tmp_path)
    # The fixture's files are not the real ones, so skip torchvision's md5 check (format stays real).
    monkeypatch.setattr(CIFAR10, "train_list", [[n, None] for n, _ in CIFAR10.train_list])
    monkeypatch.setattr(CIFAR10, "test_list", [[n, None] for n, _ in CIFAR10.test_list])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": None})
    splits = load_cifar10(str(tmp_path))
    assert splits.train_images.shape == (20, 3, 32, 32) and splits.test_images.shape == (4, 3, 32, 32)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        first = pickle.load(f)["data"][0]
    assert torch.equal(splits.train_images[0], torch.from_numpy(first.reshape(3, 32, 32)))
    assert splits.classes[0] == "airplane"


def test_cifar10_missing_gives_clear_message(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "empty") + ".*download"):
        load_cifar10(str(tmp_path / "empty"), download=False)


def test_mnist5k_split_is_fixed_and_disjoint():
    a, b = load_mnist5k(4000, 0), load_mnist5k(4000, 0)
    assert a.train_images.shape == (4000, 1, 28, 28) and a.test_images.shape == (1000, 1, 28, 28)
    assert torch.equal(a.train_labels, b.train_labels) and torch.equal(a.test_images, b.test_images)
    assert sorted(a.train_labels.unique().tolist()) == list(range(10))


def test_augmentation_crop_flip_normalize():
    images = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).reshape(2, 1, 4, 4)
    aug = CropFlipNormalize(padding=1, hflip=True, mean=[0.0], std=[1 / 255])
    out = aug.train(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.float32
    # each output is a (possibly flipped) 4x4 window of the zero-padded image
    padded = torch.nn.functional.pad(images.float(), (1, 1, 1, 1))
    for b in range(2):
        windows = [padded[b, 0, y : y + 4, x : x + 4] for y in range(3) for x in range(3)]
        windows += [w.flip(-1) for w in windows]
        assert any(torch.allclose(out[b, 0], w, atol=1e-3) for w in windows)
    again = aug.train(images, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert torch.allclose(aug.eval(images), images.float(), atol=1e-3)


def test_augmentation_fits_statistics_when_not_given():
    images = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8)
    aug = CropFlipNormalize(padding=0, hflip=False)
    aug.fit_statistics(images)
    x = aug.eval(images)
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)


def test_cifar10_download_failure_offline_is_a_clear_error(tmp_path, monkeypatch):
    import urllib.error

    import torchvision.datasets.cifar as cifar_mod

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(cifar_mod, "download_and_extract_archive", offline)
    with pytest.raises(DataError, match="could not download CIFAR-10.*no network"):
        load_cifar10(str(tmp_path), download=True)

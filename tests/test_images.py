"""`data=images`: a user's own folders and arrays taken as they are (ImageFolder's rules, each image's bit depth,
transparency, one image at a time, the cache) and the hostile files refused in one line, on small files written here."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import struct
import weakref
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import compose_cfg, run_cli_cases
from tests.datasets_util import QUICK, expect_line
from vae_lab.data import images
from vae_lab.data.images import FolderDataModule, read_array, read_folder
from vae_lab.errors import ConfigError, DataError

WHITE = (255, 255, 255)


@contextlib.contextmanager
def no_hang(seconds: int = 30):
    """Fail, instead of hanging the suite, when the block blocks (a FIFO opened for reading)."""
    def stop(*_):
        raise TimeoutError(f"blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def header_only_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header says width × height (8-bit grey) and which holds no pixels: what Pillow's bomb check reads."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IEND", b""))
    return path


def lying_npy(path: Path, claimed: tuple[int, ...], images: int) -> Path:
    """A .npy whose header claims `claimed` uint8 but which holds `images` 28×28 images."""
    header = {"descr": "|u1", "fortran_order": False, "shape": claimed}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(np.zeros((images, 28, 28), np.uint8).tobytes())
    return path


def write_folder(root: Path, classes: list[str] | None, per_class: int = 6) -> Path:
    """PNG files of several sizes and modes: in class sub-folders (ImageFolder's layout), or flat."""
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes or [""]):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)
            pixels[..., k % 3] = 255
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_images_from_folders_with_and_without_labels(tmp_path):
    labelled = FolderDataModule(path=str(write_folder(tmp_path / "cls", ["cat", "dog", "eel"])),
                                data_dir=str(tmp_path / "d"), image_size=28, test_size=3, val_size=3)
    assert labelled.num_classes == 3 and labelled.channels == 3
    labelled.setup()
    assert labelled.class_names == ["cat", "dog", "eel"]
    assert (len(labelled.splits["train"]), len(labelled.splits["val"]), len(labelled.splits["test"])) == (12, 3, 3)
    x, y = labelled.splits["train"][torch.arange(4)]
    assert x.shape == (4, 3, 28, 28) and 0 <= x.min() and x.max() <= 1 and set(y.tolist()) <= {0, 1, 2}
    cache = list((tmp_path / "d" / "images_cache").glob("*.npz"))
    assert len(cache) == 1
    again = FolderDataModule(path=str(tmp_path / "cls"), data_dir=str(tmp_path / "d"), image_size=28, test_size=3,
                             val_size=3)
    again.setup()  # from the cache, with the same seeded split
    assert torch.equal(again.splits["test"].images, labelled.splits["test"].images)
    flat = FolderDataModule(path=str(write_folder(tmp_path / "flat", None)), data_dir=str(tmp_path / "d"),
                            image_size=32, channels=1, test_size=0.2, val_size=1)
    flat.setup()
    assert flat.num_classes is None and flat.splits["train"].images.shape[1:] == (1, 32, 32)


def test_images_from_arrays_and_their_bad_inputs(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "a.npz", images=rng.random((30, 28, 28)), labels=np.arange(30) % 4)
    data = FolderDataModule(path=str(tmp_path / "a.npz"), data_dir=str(tmp_path), image_size=28, test_size=5,
                            val_size=5)
    data.setup()
    assert data.num_classes == 4 and data.channels == 1 and len(data.splits["test"]) == 5
    cases = [({"path": None}, ConfigError, "data.path: give a folder"),
             ({"path": str(tmp_path / "nope")}, ConfigError, "no such file or folder"),
             ({"path": str(tmp_path / "a.txt")}, ConfigError, "give a folder of images or a .npy / .npz"),
             ({"path": str(tmp_path / "b.npy")}, DataError, "expected N×H×W or N×H×W×C"),
             ({"path": str(tmp_path / "c.npy")}, DataError, "give uint8 0…255 or floats in [0, 1]"),
             ({"path": str(tmp_path / "a.npz"), "test_size": 40}, ConfigError, "data.test_size=40: there are only 30")]
    (tmp_path / "a.txt").write_text("x")
    np.save(tmp_path / "b.npy", np.zeros((4, 5), np.uint8))
    np.save(tmp_path / "c.npy", np.full((4, 8, 8), 3.0))
    for kwargs, error, words in cases:
        with pytest.raises(error) as err:
            FolderDataModule(**{"data_dir": str(tmp_path), "image_size": 28, **kwargs}).setup()
        expect_line(err, words)


def test_unlabelled_images_train_and_metrics_json_says_what_was_skipped(tmp_path, one_thread):
    from vae_lab.train import train

    np.save(tmp_path / "x.npy", np.random.default_rng(0).integers(0, 256, (120, 28, 28, 3), dtype=np.uint8))
    cfg = compose_cfg(tmp_path / "run", "data=images", f"data.path={tmp_path / 'x.npy'}", f"paths.data_dir={tmp_path}",
                      "data.batch_size=16", *QUICK, "data.train_subset=null")
    assert cfg.net.image_channels is None  # as given: three channels, found when the images are opened
    record = train(cfg)
    assert math.isfinite(record["test/nll_iwae"]) and math.isfinite(record["test/mse"])
    assert "no class labels" in record["skipped"]["test/fid"] and "test/fid" not in record
    assert "no ground-truth factors" in record["skipped"]["disentanglement metrics"]




def test_the_extensions_are_torchvisions():
    from torchvision.datasets.folder import IMG_EXTENSIONS

    assert images.EXTENSIONS == IMG_EXTENSIONS


def test_images_are_scaled_by_their_own_bit_depth(tmp_path):
    """Mid-grey at 8 and 16 bits, as a 32-bit integer and as a float is mid-grey, not white."""
    folder = tmp_path / "depths"
    folder.mkdir()
    Image.fromarray(np.full((6, 6), 128, np.uint8)).save(folder / "8bit.png")
    Image.fromarray(np.full((6, 6), 32768, np.uint16)).save(folder / "16bit.png")
    Image.fromarray(np.full((6, 6), 2**30, np.int32)).save(folder / "32bit.tif")
    Image.fromarray(np.full((6, 6), 0.5, np.float32)).save(folder / "float.tif")
    assert [Image.open(folder / n).mode for n in ("8bit.png", "16bit.png", "32bit.tif", "float.tif")] == \
        ["L", "I;16", "I", "F"]
    pixels, labels, names = read_folder(folder, 28, None, WHITE)
    assert pixels.shape == (4, 1, 28, 28) and labels is None and names == []
    assert (pixels == 128).all(), pixels[:, 0, 0, 0]
    Image.fromarray(np.full((6, 6), 65535, np.uint16)).save(folder / "16bit.png")
    assert (read_folder(folder, 28, 3, WHITE)[0][0] == 255).all()  # 16bit.png, first by name: white, in colour


def test_non_finite_values_are_refused_naming_the_file_and_how_many(tmp_path):
    folder = tmp_path / "floats"
    folder.mkdir()
    values = np.full((4, 4), 0.5, np.float32)
    values[0, :3], values[1, 0] = np.nan, np.inf
    Image.fromarray(values).save(folder / "nan.tif")
    with pytest.raises(DataError) as err:
        read_folder(folder, 28, None, WHITE)
    expect_line(err, str(folder / "nan.tif"), "4 of 16 values are not finite")
    array = np.full((5, 28, 28), 0.5)
    array[1, 0, :2], array[3, 5, 5] = np.nan, -np.inf
    np.save(tmp_path / "a.npy", array)
    with pytest.raises(DataError) as err:
        read_array(tmp_path / "a.npy", None, 28, None)
    expect_line(err, str(tmp_path / "a.npy"), "3 values are not finite")


def test_a_folder_follows_imagefolders_rules_and_says_what_it_skipped(tmp_path, caplog):
    """Class folders walked recursively, torchvision's extensions and class order; what is left out in one line."""
    from torchvision.datasets import ImageFolder

    root = tmp_path / "root"
    shade = iter(range(10, 250, 20))
    for name in ("b/1.png", "b/deep/er/2.png", "a/3.png", "a/sub/4.PNG", "a/sub/5.jpg", "loose.png"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((9, 7), next(shade), np.uint8)).save(root / name, format=Path(name).suffix[1:]
                                                                      .replace("jpg", "jpeg").upper())
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / "a" / "anim.gif")
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "a" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    samples = [(p, k) for p, k in ImageFolder(str(root)).samples if not p.endswith("bad.png")]
    with caplog.at_level(logging.WARNING):
        pixels, labels, names = read_folder(root, 28, None, WHITE)
    assert names == ImageFolder(str(root)).classes == ["a", "b"]
    assert labels.tolist() == [k for _, k in samples]
    expected = [int(np.asarray(Image.open(p))[0, 0]) for p, _ in samples]
    assert pixels[:, 0, 14, 14].tolist() == pytest.approx(expected, abs=2)  # the same files in the same order
    line = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(line) == 1 and "\n" not in line[0], line
    for part in ("skipped 4 files", "2 not images", "1 outside the class folders", "1 unreadable", "bad.png"):
        assert part in line[0], (part, line[0])
    (root / "empty").mkdir()
    with pytest.raises(DataError) as err:
        read_folder(root, 28, None, WHITE)
    expect_line(err, "Found no valid file for the classes empty")


def test_transparent_images_are_composited_onto_the_background_as_pillow_does(tmp_path):
    folder = tmp_path / "alpha"
    folder.mkdir()
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128            # half-transparent red
    rgba[:14, :, 3] = 0                              # the top half fully transparent
    Image.fromarray(rgba).save(folder / "a.png")
    for background, colour in (("white", WHITE), ("#000000", (0, 0, 0)), ("teal", (0, 128, 128))):
        data = FolderDataModule(path=str(folder), data_dir=str(tmp_path / "d"), image_size=28, channels=3,
                                test_size=1, val_size=1, background=background)
        expected = Image.alpha_composite(Image.new("RGBA", (28, 28), (*colour, 255)), Image.fromarray(rgba))
        assert np.array_equal(data.convert()[0][0], np.asarray(expected.convert("RGB")).transpose(2, 0, 1))
        assert tuple(data.convert()[0][0][:, 0, 0]) == colour
    with pytest.raises(ConfigError) as err:
        FolderDataModule(path=str(folder), data_dir=str(tmp_path / "d"), image_size=28, background="ultraviolet")
    expect_line(err, "data.background='ultraviolet': not a colour")


def test_one_decoded_image_at_a_time(tmp_path, monkeypatch):
    """Each image is decoded, converted and resized before the next is opened: never two full-size ones held."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(np.full((300, 400, 3), 20 * i, np.uint8)).save(folder / f"{i:02}.png")
    born, most, opened, init = [], [], Image.open, Image.Image.__init__

    def tracked_init(self, *args, **kwargs):  # every image: opened, copied or converted
        init(self, *args, **kwargs)
        born.append(weakref.ref(self))

    def tracked_open(*args, **kwargs):  # how many full-size images are alive when the next file is opened
        most.append(sum(image is not None and image.size == (400, 300) for image in (ref() for ref in born)))
        return opened(*args, **kwargs)

    monkeypatch.setattr(Image.Image, "__init__", tracked_init)
    monkeypatch.setattr(Image, "open", tracked_open)
    pixels = read_folder(folder, 32, None, WHITE)[0]
    assert pixels.shape == (12, 3, 32, 32) and len(most) == 24 and max(most) == 0  # a header pass, a decode pass


def test_the_cache_is_keyed_by_the_files_and_shows_progress_the_first_time(tmp_path, monkeypatch, capfd):
    folder = tmp_path / "grow"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(folder / f"{i}.png")
    monkeypatch.setattr(images, "PROGRESS_DELAY", 0)
    settings = {"path": str(folder), "data_dir": str(tmp_path / "d"), "image_size": 28, "channels": 1,
                "test_size": 1, "val_size": 1}
    assert len(FolderDataModule(**settings).convert()[0]) == 3
    assert "converting grow" in capfd.readouterr().err

    def no_conversion(*args):
        raise AssertionError("converted again")

    monkeypatch.setattr(images, "read_folder", no_conversion)
    assert len(FolderDataModule(**settings).convert()[0]) == 3   # from the cache, at once
    monkeypatch.undo()
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(folder / "3.png")
    assert len(FolderDataModule(**settings).convert()[0]) == 4   # an image added later is seen
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(folder / "0.png")
    os.utime(folder / "0.png", ns=(0, 10**9))
    assert FolderDataModule(**settings).convert()[0][0, 0, 0, 0] == 7   # a changed file rebuilds it
    assert len(list((tmp_path / "d" / "images_cache").glob("*.npz"))) == 1


def test_hostile_files_are_one_line(tmp_path):
    """A FIFO (as data.path, as a labels file, inside a folder), a lying .npy header, a corrupt .npz, a missing labels
    file and a 200-megapixel image: each refused (or, inside a folder, skipped) in one line, without hanging or
    allocating."""
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    np.save(tmp_path / "ok.npy", np.zeros((10, 28, 28), np.uint8))
    lying_npy(tmp_path / "lying.npy", (10**9, 28, 28), 10)
    header_only_png(tmp_path / "big" / "huge.png", 20_000, 10_000)
    np.savez_compressed(tmp_path / "good.npz", images=np.random.default_rng(0).integers(0, 256, (50, 28, 28), np.uint8))
    corrupt = bytearray((tmp_path / "good.npz").read_bytes())
    corrupt[len(corrupt) // 2: len(corrupt) // 2 + 2] = b"\x00\xff"
    (tmp_path / "corrupt.npz").write_bytes(bytes(corrupt))
    cases = [({"path": str(fifo)}, ConfigError, "is a FIFO (named pipe), not a file or folder"),
             ({"path": str(tmp_path / "ok.npy"), "labels": str(fifo)}, DataError, "is a FIFO (named pipe), not a labels"),
             ({"path": str(tmp_path / "ok.npy"), "labels": str(tmp_path / "none.npy")}, ConfigError, "no such file"),
             ({"path": str(tmp_path / "lying.npy")}, DataError, "header says uint8 (1000000000, 28, 28)"),
             ({"path": str(tmp_path / "corrupt.npz")}, DataError, "corrupt.npz: cannot be read to the end"),
             ({"path": str(tmp_path / "big")}, DataError, "huge.png: Image size (200000000 pixels) exceeds limit")]
    with no_hang():
        for kwargs, error, words in cases:
            with pytest.raises(error) as err:
                FolderDataModule(**{"data_dir": str(tmp_path / "d"), "image_size": 28, **kwargs}).setup()
            expect_line(err, words)
        os.mkfifo(tmp_path / "big" / "pipe.png")
        (tmp_path / "big" / "huge.png").unlink()
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "big" / "fine.png")
        assert len(read_folder(tmp_path / "big", 28, None, WHITE)[0]) == 1   # the FIFO skipped as unreadable


def test_hostile_data_files_are_one_line_and_exit_2_at_the_command_line(tmp_path):
    """The hostile cases through `python -m vae_lab.train`: status 2, one `error:` line, no traceback."""
    os.mkfifo(tmp_path / "pipe")
    lying_npy(tmp_path / "lying.npy", (10**9, 28, 28), 10)
    header_only_png(tmp_path / "big" / "huge.png", 20_000, 10_000)
    np.save(tmp_path / "ok.npy", np.zeros((10, 28, 28), np.uint8))
    (tmp_path / "dsprites" / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz").mkdir(parents=True)
    (tmp_path / "fifo_data" / "dsprites").mkdir(parents=True)
    os.mkfifo(tmp_path / "fifo_data" / "dsprites" / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz")
    images_run = ["data=images", "net=mlp", f"paths.data_dir={tmp_path}"]
    dsprites_run = ["data=dsprites", "net=mlp", "net.image_size=32", "data.download=false"]
    cases = [([*images_run, f"data.path={tmp_path / 'pipe'}"], "is a FIFO (named pipe), not a file or folder"),
             ([*images_run, f"data.path={tmp_path / 'lying.npy'}"], "header says uint8 (1000000000, 28, 28)"),
             ([*images_run, f"data.path={tmp_path / 'ok.npy'}", f"data.labels={tmp_path / 'none.npy'}"],
              "none.npy: no such file"),
             ([*images_run, f"data.path={tmp_path / 'big'}"], "exceeds limit"),
             ([*dsprites_run, f"paths.data_dir={tmp_path}"], "is a folder, not the data file"),
             ([*dsprites_run, f"paths.data_dir={tmp_path / 'fifo_data'}"], "is a FIFO (named pipe), not the data file")]
    results = run_cli_cases("vae_lab.train", [[*args, f"hydra.run.dir={tmp_path}/run{i}"]
                                              for i, (args, _) in enumerate(cases)])
    for (args, needle), result in zip(cases, results):
        assert result.returncode == 2, (args, result.stderr[-2000:])
        lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert "Traceback" not in result.stderr and len(lines) == 1 and needle in lines[0], (args, result.stderr[-2000:])

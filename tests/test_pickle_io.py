"""Tests of misc/pickle_io.py: restricted loading, Python 2 pickles, atomic writing."""
import os
import pickle

import numpy as np
import pytest

from misc.errors import DataError
from misc.pickle_io import dump_pickle, load_pickle
from tiny_data import python2_pickle_bytes


class _Payload:
    """Pickles to a call of `os.system`: what a malicious dataset file would hold."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _OpenPayload:
    """Pickles to `open(path, 'w')`, which would create the file on load."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def test_round_trip_of_dataset_types(tmp_path):
    obj = {
        "filenames": ["001.Black_footed_Albatross/Black_Footed_Albatross_0046_18", "jpg/image_00001"],
        "class_info": [1, 2, 200],
        "nested": (None, True, 1.5, b"raw", -7, 2 ** 70),
        "embeddings": np.random.default_rng(0).standard_normal((3, 10, 4)).astype(np.float32),
        "images": [np.arange(48, dtype=np.uint8).reshape(4, 4, 3)],
        "scalar": np.float32(0.25),
        "int_scalar": np.int64(-3),
    }
    for protocol in (2, 4, 5):
        path = tmp_path / f"p{protocol}.pickle"
        dump_pickle(obj, path, protocol=protocol)
        back = load_pickle(path)
        assert back.keys() == obj.keys()
        for key in ("filenames", "class_info", "nested", "scalar", "int_scalar"):
            assert back[key] == obj[key]
        np.testing.assert_array_equal(back["embeddings"], obj["embeddings"])
        assert back["embeddings"].dtype == np.float32
        np.testing.assert_array_equal(back["images"][0], obj["images"][0])
        assert type(back["scalar"]) is np.float32


def test_refuses_os_system_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    # Hand-written, the way an attacker would: GLOBAL 'os system', then REDUCE.
    evil = tmp_path / "evil.pickle"
    evil.write_bytes(b"cos\nsystem\n(Vtouch " + str(marker).encode() + b"\ntR.")
    with pytest.raises(DataError) as err:
        load_pickle(evil)
    message = str(err.value)
    assert str(evil) in message and "os.system" in message and "not allowed" in message
    assert not marker.exists()

    # The same through pickle's own machinery (os.system pickles as posix.system on Linux).
    for protocol in (2, 5):
        evil.write_bytes(pickle.dumps([1, _Payload(f"touch {marker}")], protocol=protocol))
        with pytest.raises(DataError, match=r"global '(os|posix|nt)\.system' is not allowed"):
            load_pickle(evil)
        assert not marker.exists()


def test_refuses_a_payload_that_creates_a_file(tmp_path):
    target = tmp_path / "created_by_pickle.txt"
    evil = tmp_path / "evil.pickle"
    evil.write_bytes(pickle.dumps({"a": _OpenPayload(target)}, protocol=2))
    with pytest.raises(DataError, match=r"global '(__builtin__|builtins|io)\.open' is not allowed"):
        load_pickle(evil)
    assert not target.exists()


@pytest.mark.parametrize("module,name", [("builtins", "eval"), ("builtins", "getattr"),
                                          ("numpy", "load"), ("subprocess", "Popen")])
def test_refuses_other_globals(tmp_path, module, name):
    evil = tmp_path / "evil.pickle"
    evil.write_bytes(b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n.")
    with pytest.raises(DataError, match=rf"global '{module}\.{name}' is not allowed"):
        load_pickle(evil)


def test_codecs_encode_only_restores_latin1_bytes(tmp_path):
    evil = tmp_path / "evil.pickle"
    evil.write_bytes(b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(DataError, match="evil.pickle"):
        load_pickle(evil)


def test_python2_pickles_load(tmp_path):
    # Buffers with bytes >= 0x80 and longer than 255 bytes (BINSTRING) must survive the latin1 trip.
    embeddings = np.random.default_rng(1).standard_normal((4, 10, 8)).astype(np.float32)
    images = [np.full((2, 2, 3), 250, dtype=np.uint8), np.arange(12, dtype=np.uint8).reshape(2, 2, 3)]
    cases = {
        "filenames": ["002.Laysan_Albatross/Laysan_Albatross_0002_1027", "jpg/image_08189", "caf\xe9"],
        "class_info": [2, 102, 2 ** 40],
        "mixed": {"k": (1.25, None, True, [])},
    }
    for name, obj in cases.items():
        path = tmp_path / f"{name}.pickle"
        path.write_bytes(python2_pickle_bytes(obj))
        assert load_pickle(path) == obj
    path = tmp_path / "emb.pickle"
    data = python2_pickle_bytes(embeddings)
    assert b"numpy.core.multiarray\n_reconstruct" in data and b"T\x00\x05\x00\x00" in data
    path.write_bytes(data)
    back = load_pickle(path)
    assert back.dtype == np.float32 and back.shape == (4, 10, 8)
    np.testing.assert_array_equal(back, embeddings)
    path.write_bytes(python2_pickle_bytes(images))
    back = load_pickle(path)
    assert all(b.dtype == np.uint8 for b in back)
    np.testing.assert_array_equal(np.stack(back), np.stack(images))


def test_missing_truncated_corrupt_files(tmp_path):
    with pytest.raises(DataError, match="nope.pickle: file not found"):
        load_pickle(tmp_path / "nope.pickle")
    with pytest.raises(DataError, match="is a directory"):
        load_pickle(tmp_path)
    good = pickle.dumps([np.arange(100, dtype=np.float32), "x" * 50], protocol=2)
    for name, data in (("truncated", good[: len(good) // 2]), ("empty", b""),
                       ("garbage", b"\x00not a pickle at all"), ("noise", bytes(range(256)))):
        path = tmp_path / f"{name}.pickle"
        path.write_bytes(data)
        with pytest.raises(DataError, match=rf"{name}\.pickle: truncated or corrupt pickle"):
            load_pickle(path)


def test_dump_is_atomic(tmp_path):
    path = tmp_path / "sub" / "data.pickle"
    dump_pickle([1, 2], path)
    assert load_pickle(path) == [1, 2]
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        dump_pickle([3, lambda: None], path)
    assert load_pickle(path) == [1, 2]
    assert sorted(p.name for p in path.parent.iterdir()) == ["data.pickle"]
    assert path.read_bytes()[:2] == b"\x80\x02"

"""Tests for the restricted unpickler and the other safe readers."""

from __future__ import annotations

import contextlib
import os
import pickle
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from tseg.data import safe_pickle
from tseg.data.base import DatasetError
from tseg.data.files import join_inside, load_json, read_rgb
from tseg.data.safe_pickle import load_pickle


def _write(tmp_path: Path, data: bytes, name: str = "x.p") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


class _Evil:
    """Unpickling this would run a shell command (if the unpickler allowed it)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: D105
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_os_system_is_refused_and_not_run(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    path = _write(tmp_path, pickle.dumps([{"a": _Evil(marker)}], protocol=protocol))
    with pytest.raises(DatasetError) as err:
        load_pickle(path)
    assert not marker.exists()
    msg = str(err.value)
    assert str(path) in msg
    assert f"{os.system.__module__}.system" in msg  # "posix.system" on Linux


@pytest.mark.parametrize(
    "obj, refused",
    [
        ({1, 2}, "set"),  # protocol 2 pickles sets as a call to builtins.set
        (frozenset([1]), "frozenset"),
        (np.int64(3), "numpy"),
        (complex(1, 2), "complex"),
    ],
)
def test_every_global_is_refused(tmp_path: Path, obj: object, refused: str) -> None:
    path = _write(tmp_path, pickle.dumps(obj, protocol=2))
    with pytest.raises(DatasetError, match=refused):
        load_pickle(path)


def test_sets_built_without_globals_are_refused(tmp_path: Path) -> None:
    # Protocol 4 has EMPTY_SET/ADDITEMS opcodes: no global, but not a plain type either.
    path = _write(tmp_path, pickle.dumps({"s": {1, 2}}, protocol=4))
    with pytest.raises(DatasetError, match="set"):
        load_pickle(path)


def test_plain_data_loads(tmp_path: Path) -> None:
    data = {
        "refs": [
            {"ref_id": 1, "sentences": [{"sent": "man", "tokens": ["man"]}], "split": "val"},
            (1, 2.5, True, None, -(10**30)),
        ],
        "blob": b"\x00\xff",
    }
    for protocol in range(3, pickle.HIGHEST_PROTOCOL + 1):
        path = _write(tmp_path, pickle.dumps(data, protocol=protocol))
        assert load_pickle(path) == data


def test_cyclic_structures_are_refused(tmp_path: Path) -> None:
    # A list that contains itself expands without end when walked: refused, named.
    a: list[object] = [1]
    a.append(a)
    with pytest.raises(DatasetError, match="holds a list that contains itself") as err:
        load_pickle(_write(tmp_path, pickle.dumps(a, protocol=2)))
    assert "x.p" in str(err.value)
    d: dict[str, object] = {"sentences": []}
    d["sentences"].append({"ref": d})  # type: ignore[attr-defined]
    with pytest.raises(DatasetError, match="holds a dict that contains itself"):
        load_pickle(_write(tmp_path, pickle.dumps([d], protocol=2)))


def _shared_nest(depth: int) -> list[object]:
    """A list holding the same list twice, ``depth`` deep: 2**depth lists when walked."""
    x: list[object] = []
    for _ in range(depth):
        x = [x, x]
    return x


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_shared_references_that_expand_exponentially_are_refused(
    tmp_path: Path, protocol: int
) -> None:
    data = pickle.dumps(_shared_nest(30), protocol=protocol)
    assert len(data) < 400  # 216 bytes at protocol 2, standing for 2**31 - 1 lists
    path = _write(tmp_path, data, "refs(unc).p")
    with pytest.raises(DatasetError, match="expands to more than 1,00") as err:
        load_pickle(path)
    assert str(path) in str(err.value)


def test_some_sharing_within_the_bound_loads(tmp_path: Path) -> None:
    # Sharing is allowed while the walk stays small: 2**10 - 1 lists from 10 levels.
    obj = _shared_nest(10)
    out = load_pickle(_write(tmp_path, pickle.dumps(obj, protocol=2)))
    assert out == obj and out[0] is out[1]
    with (
        mock.patch.object(safe_pickle, "EXPANSION_BASE", 1000),
        mock.patch.object(safe_pickle, "EXPANSION_PER_BYTE", 0),
        pytest.raises(DatasetError, match="expands to more than 1,000 objects"),
    ):
        load_pickle(_write(tmp_path, pickle.dumps([obj, obj], protocol=2)))


def test_refer_toolkit_refs_expand_to_at_most_one_object_per_byte(tmp_path: Path) -> None:
    # The fixture refs, written as tests/builders/refcoco.py's make_refcoco writes them
    # (protocol 2, a tree sharing only strings), load under the tightest bound.
    from builders.refcoco import default_refs

    refs = default_refs()
    path = _write(tmp_path, pickle.dumps(refs, protocol=2), "refs(unc).p")
    with (
        mock.patch.object(safe_pickle, "EXPANSION_BASE", 0),
        mock.patch.object(safe_pickle, "EXPANSION_PER_BYTE", 1),
    ):
        assert load_pickle(path) == refs


def _py2_str(raw: bytes) -> bytes:
    # SHORT_BINSTRING: how python2 pickles a byte string with protocol 2.
    return b"U" + bytes([len(raw)]) + raw


def test_python2_byte_strings_are_decoded(tmp_path: Path) -> None:
    # {'sent': 'café'} (UTF-8 bytes) and ['\xe9t\xe9'] (latin1) as python2 writes them.
    body = (
        b"\x80\x02}q\x00("
        + _py2_str(b"sent")
        + _py2_str("café".encode())
        + _py2_str(b"raw")
        + _py2_str(b"\xe9t\xe9")
        + b"u."
    )
    assert load_pickle(_write(tmp_path, body)) == {"sent": "café", "raw": "été"}


def test_bytes_by_protocol(tmp_path: Path) -> None:
    # Protocol >= 3 has a bytes opcode; python3 writes bytes in protocol 2 through
    # the global _codecs.encode, which is refused like any other global.
    assert load_pickle(_write(tmp_path, pickle.dumps([b"\xff"], protocol=3))) == [b"\xff"]
    with pytest.raises(DatasetError, match="_codecs.encode"):
        load_pickle(_write(tmp_path, pickle.dumps([b"\xff"], protocol=2)))


def test_truncated_pickle(tmp_path: Path) -> None:
    full = pickle.dumps([{"sent": "x" * 50}] * 3, protocol=2)
    with pytest.raises(DatasetError, match="truncated|not a valid pickle") as err:
        load_pickle(_write(tmp_path, full[: len(full) // 2]))
    assert "x.p" in str(err.value)


def test_empty_and_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError):
        load_pickle(_write(tmp_path, b""))
    with pytest.raises(DatasetError, match="not a valid pickle"):
        load_pickle(_write(tmp_path, b"this is not a pickle"))


def test_missing_pickle(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="file not found") as err:
        load_pickle(tmp_path / "refs(unc).p")
    assert "refs(unc).p" in str(err.value)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_only_raise_dataset_error(tmp_path_factory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("p") / "r.p"
    path.write_bytes(data)
    with contextlib.suppress(DatasetError):
        load_pickle(path)


_plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(_plain, st.integers(0, pickle.HIGHEST_PROTOCOL))
def test_plain_structures_round_trip(tmp_path_factory, obj: object, protocol: int) -> None:
    path = tmp_path_factory.mktemp("p") / "r.p"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    assert load_pickle(path) == obj
    # A tree (no container shared) expands to at most one object per byte of its pickle.
    with (
        mock.patch.object(safe_pickle, "EXPANSION_BASE", 0),
        mock.patch.object(safe_pickle, "EXPANSION_PER_BYTE", 1),
    ):
        assert load_pickle(path) == obj


def test_load_json_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [1, 2,')
    with pytest.raises(DatasetError, match=r"bad\.json: malformed JSON at line 1"):
        load_json(bad)
    nan = tmp_path / "nan.json"
    nan.write_text('{"x": NaN}')
    with pytest.raises(DatasetError, match="NaN"):
        load_json(nan)
    with pytest.raises(DatasetError, match="file not found"):
        load_json(tmp_path / "absent.json")


@pytest.mark.parametrize("name", ["../x.jpg", "a/../../x.jpg", "/etc/passwd", "..", "", None, 3])
def test_join_inside_refuses_escapes(tmp_path: Path, name: object) -> None:
    with pytest.raises(DatasetError, match="where"):
        join_inside(tmp_path, name, where="where")


def test_join_inside_accepts_subfolders(tmp_path: Path) -> None:
    assert join_inside(tmp_path, "sub/./x.jpg", where="w") == tmp_path / "sub" / "x.jpg"


def test_read_rgb(tmp_path: Path) -> None:
    Image.new("L", (5, 4), 7).save(tmp_path / "g.png")
    arr = read_rgb(tmp_path / "g.png", size=(4, 5))
    assert arr.shape == (4, 5, 3) and arr.dtype == np.uint8 and (arr == 7).all()
    with pytest.raises(DatasetError, match="annotation says 5x4"):
        read_rgb(tmp_path / "g.png", size=(5, 4))
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="cannot read the image"):
        read_rgb(tmp_path / "bad.jpg")
    with pytest.raises(DatasetError, match="image file not found"):
        read_rgb(tmp_path / "absent.jpg")

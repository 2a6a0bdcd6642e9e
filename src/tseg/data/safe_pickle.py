"""Safe reading of untrusted dataset pickles.

Dataset annotations come from the internet, so nothing read here may execute code:

* ``load_pickle`` reads pickles (the ``refs(<splitBy>).p`` files of the ``refer``
  toolkit) with an unpickler that refuses every global, so only plain containers and
  scalars can be built and no callable can ever be reached. It also bounds what the
  result expands to when walked (shared references followed): a 216-byte pickle of a list
  holding the same list twice, 30 deep, stands for 2**30 lists.

JSON, images and paths of the annotation files are read by ``tseg.data.files``; numbers and
polygon coordinates are checked by ``tseg.data.numbers``.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from tseg.data.base import DatasetError

__all__ = ["PLAIN_TYPES", "load_pickle"]

#: The only types a loaded pickle may contain.
PLAIN_TYPES: tuple[type, ...] = (dict, list, tuple, str, bytes, int, float, bool, type(None))

#: A pickle may expand to at most this many objects, plus ``EXPANSION_PER_BYTE`` per byte
#: of the file, counting a shared object once per reference to it. Every object of a pickle
#: that shares no container is pushed by an opcode of at least one byte, so it expands to at
#: most one object per byte (the refer toolkit's files share none: they are trees); only a
#: container referred to again (memo get, DUP) expands to more, and nested sharing does so
#: exponentially.
EXPANSION_BASE = 1_000_000
EXPANSION_PER_BYTE = 4


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global (and hence every class and callable)."""

    def __init__(self, file: Any, source: Path) -> None:
        # "bytes" keeps python2 byte strings undecoded, so _check_and_fix can decode
        # them as UTF-8 (falling back to latin1) instead of guessing one codec here.
        super().__init__(file, encoding="bytes")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        # Without globals no REDUCE/BUILD/NEWOBJ can name a callable: this is the
        # whole security argument, so it must not allow even harmless builtins.
        raise DatasetError(
            f"{self._source}: refused to load global '{module}.{name}' from the pickle "
            "(only dict, list, tuple, str, bytes, int, float, bool and None are allowed)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise DatasetError(f"{self._source}: refused a persistent id in the pickle")


def _py2_text(raw: bytes) -> str:
    """Decode a python2 byte string: UTF-8 when valid, else latin1 (never fails)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin1")


def _check_and_fix(obj: Any, source: Path, bytes_are_text: bool, limit: int) -> Any:
    """Check that ``obj`` holds only plain types; decode python2 strings if asked.

    Lists and dicts are updated in place (the memo of a pickle can share them); tuples are
    rebuilt. Each container is visited once, but its expanded size (objects reached when
    walking it, once per reference) is counted, and more than ``limit`` in all is refused,
    as is a container that contains itself (an infinite expansion).
    """
    # id -> (fixed object, expanded size); ids of the containers being visited.
    seen: dict[int, tuple[Any, int]] = {}
    active: set[int] = set()

    def too_large() -> DatasetError:
        return DatasetError(
            f"{source}: the pickle expands to more than {limit:,} objects when its shared "
            "references are followed (refs files of the refer toolkit share no list or dict)"
        )

    def visit(x: Any) -> tuple[Any, int]:
        t = type(x)
        if t is bytes:
            return (_py2_text(x) if bytes_are_text else x), 1
        if t in (str, int, float, bool) or x is None:
            return x, 1
        key = id(x)
        if key in seen:
            return seen[key]
        if key in active:
            raise DatasetError(f"{source}: the pickle holds a {t.__name__} that contains itself")
        if t not in (list, dict, tuple):
            # Reachable through opcodes that need no global (sets, bytearray).
            raise DatasetError(
                f"{source}: the pickle contains a {t.__name__}, which is not allowed"
            )
        active.add(key)
        size = 1
        children = list(x.items()) if t is dict else x
        fixed_children = []
        for child in children:
            if t is dict:
                (k, nk), (v, nv) = visit(child[0]), visit(child[1])
                fixed, n = (k, v), nk + nv
            else:
                fixed, n = visit(child)
            size += n
            if size > limit:  # checked as it grows: sizes never become huge integers
                raise too_large()
            fixed_children.append(fixed)
        active.discard(key)
        if t is list:
            x[:] = fixed_children
            result: Any = x
        elif t is dict:
            x.clear()
            x.update(fixed_children)
            result = x
        else:
            result = tuple(fixed_children)
        seen[key] = (result, size)
        return result, size

    try:
        return visit(obj)[0]
    except RecursionError:
        raise DatasetError(f"{source}: the pickle is nested too deeply") from None


def load_pickle(path: str | os.PathLike[str]) -> Any:
    """Load a pickle that may only contain plain containers and scalars.

    Python2 pickles (protocol 2 or lower, as written by the ``refer`` toolkit) store
    text as byte strings; in a pickle of protocol 2 or lower every ``bytes`` object can
    only come from such a string (python3 writes ``bytes`` there through a global,
    which is refused), so they are all decoded: UTF-8 where valid, latin1 otherwise.
    ``bytes`` in protocol 3+ pickles stay ``bytes``.

    Args:
        path: The pickle file.

    Returns:
        The unpickled object (dicts, lists, tuples, str, bytes, int, float, bool, None).

    Raises:
        DatasetError: The file is missing, truncated or corrupt, or it names any global
            (the message gives the file and the refused ``module.name``), or it expands
            to more than ``EXPANSION_BASE + EXPANSION_PER_BYTE * size`` objects when its
            shared references are followed, or holds a list or dict that contains itself.
    """
    source = Path(path)
    try:
        with open(source, "rb") as f:
            head = f.read(2)
            f.seek(0)
            # A PROTO opcode (0x80) with version >= 3 means python3 wrote it.
            py2_era = not (len(head) == 2 and head[0] == 0x80 and head[1] >= 3)
            size = os.fstat(f.fileno()).st_size
            obj = _RestrictedUnpickler(f, source).load()
    except DatasetError:
        raise
    except FileNotFoundError:
        raise DatasetError(f"{source}: file not found") from None
    except OSError as e:
        raise DatasetError(f"{source}: cannot read ({e.strerror or e})") from None
    except EOFError:
        raise DatasetError(f"{source}: the pickle is truncated (unexpected end of file)") from None
    except RecursionError:
        raise DatasetError(f"{source}: the pickle is nested too deeply") from None
    except Exception as e:  # any other unpickling failure means a corrupt file
        raise DatasetError(f"{source}: not a valid pickle ({type(e).__name__}: {e})") from None
    limit = EXPANSION_BASE + EXPANSION_PER_BYTE * size
    return _check_and_fix(obj, source, py2_era, limit)

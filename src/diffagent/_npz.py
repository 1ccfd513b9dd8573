"""Dataclass trees of arrays saved as one ``.npz`` file: fast to load, and unable to run code.

A cache under ``DIFFAGENT_HOME`` is a file anyone with write access there could replace, so it must never
be a pickle. :func:`save` walks a dataclass by its type hints: numpy arrays and scipy sparse matrices become
arrays of the archive (read back with ``allow_pickle=False``), lists of strings one UTF-8 blob, everything
else JSON. :func:`load` rebuilds the same types from the same hints, so a file can only ever produce the
declared fields. The zip format checks each member's CRC, so a damaged file fails to load instead of
loading wrong values; callers rebuild on :class:`CacheError`.

Supported field types: ``np.ndarray``, ``scipy.sparse.csr_matrix`` / ``csc_matrix``, ``str``, ``int``,
``float``, ``bool``, ``None``, unions with ``None``, ``list``, ``tuple`` (fixed or ``...``), ``dict`` (any
supported key type), ``Any`` (plain JSON), nested dataclasses, and pydantic models (as their JSON). A
``Sequence[T]`` comes back as a read-only sequence that decodes an item when it is read, for big columns
read sparsely: strings from one UTF-8 blob, other items (JSON values, records, models: nothing holding an
array) from one JSON text each, so that loading the cache decodes none of them. A field declared with
``metadata=BUILD_ONLY`` (and a default) is not written: it serves the build that made the value, and a
loaded value has its default.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel

from ._io import atomic_open
from .errors import DiffAgentError

__all__ = ["BUILD_ONLY", "CacheError", "load", "save"]

T = TypeVar("T")
_TREE = "__tree__"
BUILD_ONLY: dict[str, Any] = {"cached": False}
"""Field metadata: what only the build uses (training folds, texts it summarised) stays out of the file."""


_hints: Callable[[Any], dict[str, Any]] = functools.lru_cache(maxsize=None)(typing.get_type_hints)


class CacheError(DiffAgentError):
    """A cache file that is missing, damaged or of another format: rebuild it."""


class _Encoder:
    def __init__(self, inline: bool = False) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.inline = inline
        """Items of a lazy sequence: plain JSON only (lists of strings stay lists, arrays are refused)."""

    def array(self, value: np.ndarray) -> dict[str, str]:
        if value.dtype == object:
            raise TypeError("object arrays cannot be cached")
        if self.inline:
            raise TypeError("the items of a cached Sequence cannot hold arrays")
        key = f"a{len(self.arrays)}"
        self.arrays[key] = value
        return {"array": key}

    def encode(self, value: Any, hint: Any) -> Any:
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if value is None:
            return None
        if origin in (typing.Union, types.UnionType):
            return self.encode(value, next(a for a in args if a is not type(None)))
        if hint is np.ndarray or origin is np.ndarray:
            return self.array(np.asarray(value))
        if _is_sparse(hint):
            return {
                "sparse": value.format,
                "shape": list(value.shape),
                "data": self.array(value.data),
                "indices": self.array(value.indices),
                "indptr": self.array(value.indptr),
            }
        if isinstance(hint, type) and issubclass(hint, BaseModel):
            return value.model_dump(mode="json")
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            hints = _hints(hint)
            return {f.name: self.encode(getattr(value, f.name), hints[f.name]) for f in _fields(hint)}
        strings = bool(args) and args[0] in (str, str | None)
        if origin in (list, Sequence) and strings and not self.inline and _blobbed(value):
            return self.blob([v.encode("utf-8", "surrogatepass") if v is not None else None for v in value])
        if origin is Sequence and args and not strings and not self.inline:
            inline = _Encoder(inline=True)  # one JSON text per item, decoded when the item is read
            texts = [json.dumps(inline.encode(v, args[0]), ensure_ascii=False) for v in value]
            return {"items": self.blob([t.encode("utf-8", "surrogatepass") for t in texts])}
        if _is_record_groups(origin, args):
            flat = [item for group in value for item in group]  # lists of records: one table, cut
            return {"cuts": [len(group) for group in value], "table": self.encode(flat, args[0])}
        if origin is list and args and _is_record(args[0]):  # a table: one column per field
            hints = _hints(args[0])
            return {
                "rows": len(value),
                "columns": {
                    f.name: self.encode(
                        [getattr(v, f.name) for v in value], types.GenericAlias(list, (hints[f.name],))
                    )
                    for f in _fields(args[0])
                },
            }
        if origin in (list, tuple, Sequence):  # a Sequence inside an item is a plain list
            return [self.encode(v, _item_hint(args, i)) for i, v in enumerate(value)]
        if origin is dict:  # keys and values as two lists: many strings become one blob each
            key_hint, value_hint = args
            return {
                "keys": self.encode(list(value), types.GenericAlias(list, (key_hint,))),
                "values": self.encode(list(value.values()), types.GenericAlias(list, (value_hint,))),
            }
        if isinstance(value, np.generic):
            return value.item()
        return value

    def blob(self, items: list[bytes | None]) -> dict[str, Any]:
        """Byte strings (None kept apart) as one array and their end offsets: item i ends at ``ends[i]``,
        the next starts one byte later (a NUL between, which UTF-8 text of JSON never holds)."""
        parts = [item or b"" for item in items]
        ends = np.cumsum([len(part) + 1 for part in parts], dtype=np.int64) - 1
        return {
            "strings": self.array(np.frombuffer(b"\x00".join(parts), dtype=np.uint8)),
            "ends": self.array(ends),
            "count": len(items),
            "nulls": [i for i, item in enumerate(items) if item is None],
        }


def _is_record(hint: Any) -> bool:
    """A dataclass stored column by column in a list: its field names are written once, not per row."""
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


_BLOB_MIN = 64
"""Shorter lists of strings stay in the JSON tree: an archive member costs more to read than they do."""


def _blobbed(values: list[str | None]) -> bool:
    if len(values) < _BLOB_MIN:
        return False
    return all(v is None or (isinstance(v, str) and "\x00" not in v) for v in values)


def _is_sparse(hint: Any) -> bool:
    module = getattr(hint, "__module__", "") or ""
    return module.startswith("scipy.sparse")


def _fields(cls: Any) -> tuple[dataclasses.Field[Any], ...]:
    """The fields written and read: init fields, less the build-only ones (which need a default)."""
    fields = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.metadata.get("cached", True):
            fields.append(f)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise TypeError(f"build-only field {cls.__qualname__}.{f.name} needs a default")
    return tuple(fields)


def _item_hint(args: tuple[Any, ...], index: int) -> Any:
    if not args:
        return Any
    if len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    return args[index] if index < len(args) else args[-1]


_SCALARS = (str, int, float, bool)
_SIMPLE: set[Any] = set()
"""Decoders that return JSON values as they are (filled below, once those functions exist)."""
Decode = Callable[[Any, Any], Any]
"""``decode(data, archive)``: one value of a declared type from its JSON tree and the archive's arrays."""


def _array_ref(ref: Any, archive: Any) -> np.ndarray:
    if not isinstance(ref, dict) or not isinstance(ref.get("array"), str):
        raise CacheError("cache tree names no array where one is declared")
    return archive[ref["array"]]


def _plain(data: Any, archive: Any) -> Any:
    return data


def _to_float(data: Any, archive: Any) -> Any:
    return float(data) if isinstance(data, int) else data


_SIMPLE.update({_plain, _to_float})


def _is_record_groups(origin: Any, args: tuple[Any, ...]) -> bool:
    """``list[list[SomeDataclass]]``: stored as one table and the length of each inner list."""
    if origin is not list or not args or typing.get_origin(args[0]) is not list:
        return False
    inner = typing.get_args(args[0])
    return bool(inner) and _is_record(inner[0])


@functools.cache
def _decoder(hint: Any) -> Decode:
    """The decoder of one type hint, built once: loading walks big trees, so no dispatch per value."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = _decoder(next(a for a in args if a is not type(None)))
        return lambda data, archive: None if data is None else inner(data, archive)
    if hint is np.ndarray or origin is np.ndarray:
        return _array_ref
    if _is_sparse(hint):
        return _sparse
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        model: Any = hint
        return lambda data, archive: model.model_validate(data)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        make: Any = hint
        hints = _hints(hint)
        parts = [(f.name, _decoder(hints[f.name])) for f in _fields(hint)]
        return lambda data, archive: make(**{name: decode(data[name], archive) for name, decode in parts})
    if hint is float:
        return _to_float
    if hint in _SCALARS or hint is Any or hint is type(None):
        return _plain
    if _is_record_groups(origin, args):
        return functools.partial(_groups, _decoder(args[0]))
    if origin is list and args and _is_record(args[0]):
        record: Any = args[0]
        hints = _hints(record)
        cached = _fields(record)
        if [f.name for f in dataclasses.fields(record)][: len(cached)] != [f.name for f in cached]:
            raise TypeError(
                f"{record.__qualname__}: rows are built by position, so build-only fields go last"
            )
        columns = [(f.name, _decoder(types.GenericAlias(list, (hints[f.name],)))) for f in cached]
        return functools.partial(_table, record, columns)
    if origin is Sequence and args and args[0] not in (str, str | None):
        return functools.partial(_items, _decoder(args[0]))
    if origin in (list, Sequence):  # a Sequence of strings is read lazily, a list at once
        item = _decoder(_item_hint(args, 0))
        return functools.partial(_list, item, origin is Sequence)
    if origin is tuple:
        items = [_decoder(a) for a in args if a is not Ellipsis] or [_plain]
        return functools.partial(_tuple, items, len(args) == 2 and args[1] is Ellipsis)
    if origin is dict:
        lists = (_decoder(types.GenericAlias(list, (a,))) for a in args)
        return functools.partial(_dict, *lists)
    raise TypeError(f"cannot cache values of type {hint!r}")


def _sparse(data: Any, archive: Any) -> Any:
    from scipy import sparse

    make = sparse.csr_matrix if data["sparse"] == "csr" else sparse.csc_matrix
    parts = tuple(_array_ref(data[name], archive) for name in ("data", "indices", "indptr"))
    return make(parts, shape=tuple(data["shape"]))


def _table(record: Any, columns: list[tuple[str, Decode]], data: Any, archive: Any) -> list[Any]:
    """Rows of a dataclass from its columns (fields are passed by position, in declaration order)."""
    if not data["rows"]:
        return []
    values = [decode(data["columns"][name], archive) for name, decode in columns]
    return [record(*row) for row in zip(*values, strict=True)]


def _utf8(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogatepass")


def _list(item: Decode, lazy: bool, data: Any, archive: Any) -> Sequence[Any]:
    if isinstance(data, dict):  # strings, stored as one blob
        if not data["count"]:
            return []
        blob, nulls = _array_ref(data["strings"], archive), data.get("nulls", ())
        if lazy:
            return _Lazy(blob, _array_ref(data["ends"], archive), nulls, _utf8)
        strings: list[Any] = _utf8(blob.tobytes()).split("\x00")
        for index in nulls:
            strings[index] = None
        return strings
    if item is _plain:
        return list(data)
    return [item(v, archive) for v in data]


def _items(item: Decode, data: Any, archive: Any) -> Sequence[Any]:
    """A lazy sequence of JSON-stored items (see :class:`_Lazy`); a plain list inside such an item."""
    if isinstance(data, list):
        return [item(v, archive) for v in data]
    stored = data["items"]
    if not stored["count"]:
        return []
    blob, ends = _array_ref(stored["strings"], archive), _array_ref(stored["ends"], archive)
    return _Lazy(blob, ends, (), lambda raw: item(json.loads(raw), None))


class _Lazy(Sequence[Any]):
    """A cached list decoded item by item on first access, then kept: an index of 30,000 example prompts
    answers a prompt by reading three of them. Items are byte strings in one blob (see
    :meth:`_Encoder.blob`), turned into values by ``decode``."""

    def __init__(
        self, blob: np.ndarray, ends: np.ndarray, nulls: Iterable[int], decode: Callable[[bytes], Any]
    ) -> None:
        self._blob = blob
        self._ends = ends
        self._nulls = frozenset(nulls)
        self._decode = decode
        self._seen: dict[int, Any] = {}
        """Items decoded already (a batch reads the same examples' hires fixes and LoRAs again and again)."""

    def __len__(self) -> int:
        return len(self._ends)

    def _item(self, index: int) -> Any:
        if index in self._nulls:
            return None
        if index not in self._seen:
            start = int(self._ends[index - 1]) + 1 if index else 0
            self._seen[index] = self._decode(self._blob[start : int(self._ends[index])].tobytes())
        return self._seen[index]

    @typing.overload
    def __getitem__(self, index: int) -> Any: ...
    @typing.overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self._item(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._item(index)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]


def _groups(table: Decode, data: Any, archive: Any) -> list[Any]:
    """Lists of records, stored as one table and the length of each list."""
    flat, groups, start = table(data["table"], archive), [], 0
    for count in data["cuts"]:
        groups.append(flat[start : start + count])
        start += count
    return groups


def _tuple(items: list[Decode], repeated: bool, data: Any, archive: Any) -> tuple[Any, ...]:
    if repeated:
        item = items[0]
        if item is _plain:
            return tuple(data)
        if isinstance(item, functools.partial) and item.func is _tuple and set(item.args[0]) <= _SIMPLE:
            return tuple(map(tuple, data))  # pairs of numbers: no call per number (a float stays a float)
        return tuple(item(v, archive) for v in data)
    return tuple(decode(v, archive) for decode, v in zip(items, data, strict=True))


def _dict(keys: Decode, values: Decode, data: Any, archive: Any) -> dict[Any, Any]:
    return dict(zip(keys(data["keys"], archive), values(data["values"], archive), strict=True))


def save(path: Path, value: Any, meta: dict[str, Any]) -> None:
    """Write dataclass ``value`` and the JSON-able ``meta`` (format, key ...) to ``path`` atomically."""
    encoder = _Encoder()
    tree = {"meta": meta, "type": type(value).__qualname__, "value": encoder.encode(value, type(value))}
    blob = json.dumps(tree, ensure_ascii=False).encode("utf-8", "surrogatepass")
    with atomic_open(path, "wb") as handle:
        arrays: dict[str, Any] = {**encoder.arrays, _TREE: np.frombuffer(blob, dtype=np.uint8)}
        np.savez(handle, **arrays)


def load(path: Path, cls: type[T], meta: dict[str, Any]) -> T:
    """The ``cls`` saved at ``path``, when its saved meta equals ``meta``; :class:`CacheError` otherwise."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            tree = json.loads(archive[_TREE].tobytes().decode("utf-8", "surrogatepass"))
            if tree.get("meta") != meta or tree.get("type") != cls.__qualname__:
                raise CacheError(f"{path.name} was written for another key or format")
            decode = _decoder(cls)  # type: ignore[arg-type]  # classes are hashable
            result: T = decode(tree["value"], archive)
            return result
    except CacheError:
        raise
    except FileNotFoundError as exc:
        raise CacheError(f"{path.name} does not exist") from exc
    except Exception as exc:  # any damage (zip, header, tree, shapes): the caller rebuilds, saying so
        raise CacheError(f"{path.name} is damaged ({type(exc).__name__})") from exc

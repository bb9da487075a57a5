"""Reading pickles that come from the internet (GEOM conformers, DeepDTA's ``Y``) without running
anything they carry.

A pickle names the callables that rebuild its objects (``module.name`` globals, applied by the
``REDUCE``/``NEWOBJ``/``BUILD`` opcodes); :class:`pickle.load` imports and calls whatever is
named, which is how a file with a ``__reduce__`` payload runs ``os.system``. Here every global is
looked up in an allow-list (:data:`GEOM_GLOBALS`, :data:`NUMPY_ARRAY_GLOBALS`) of exact
``(module, name)`` pairs; anything else - another module, a dotted attribute path, a persistent
id - raises :class:`UnsafePickle` *before* it is imported or called, so nothing runs.

The allowed callables only build data: RDKit's ``Mol`` from its binary form, numpy arrays,
dtypes and scalars, ``set``/``frozenset`` (protocol <= 3 writes those as calls), latin-1 bytes. Containers,
strings, numbers, bytes, ``None`` and booleans need no global at all.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
from typing import BinaryIO, Mapping

#: numpy's array reconstruction: what ``pickle.dumps(ndarray)`` names (numpy 1.x and 2.x module names)
NUMPY_ARRAY_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),  # protocol 5
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # protocol 2 writes bytes as _codecs.encode(text, "latin1"); only latin-1 is admitted
})

#: what a GEOM ``rdkit_folder`` pickle holds: RDKit molecules, builtin containers and scalars,
#: numpy arrays and scalars
GEOM_GLOBALS: frozenset[tuple[str, str]] = NUMPY_ARRAY_GLOBALS | frozenset({
    ("rdkit.Chem.rdchem", "Mol"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
})

# where the allowed names live in the installed versions (numpy 2 renamed numpy.core to numpy._core)
_ALIASES: Mapping[str, tuple[str, ...]] = {
    "numpy.core.multiarray": ("numpy.core.multiarray", "numpy._core.multiarray"),
    "numpy._core.multiarray": ("numpy._core.multiarray", "numpy.core.multiarray"),
    "numpy.core.numeric": ("numpy.core.numeric", "numpy._core.numeric"),
    "numpy._core.numeric": ("numpy._core.numeric", "numpy.core.numeric"),
}


class UnsafePickle(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list (nothing was imported or called)."""


def _latin1_encode(text, encoding="latin1"):
    """What protocol-2 pickles call to rebuild ``bytes``: ``_codecs.encode`` restricted to latin-1
    (other codecs would import modules by name)."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise UnsafePickle(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _resolve(module: str, name: str):
    if (module, name) == ("_codecs", "encode"):
        return _latin1_encode
    import importlib
    import warnings

    last: Exception | None = None
    for mod_name in _ALIASES.get(module, (module,)):
        try:
            with warnings.catch_warnings():  # numpy 2 warns on numpy.core
                warnings.simplefilter("ignore", DeprecationWarning)
                return getattr(importlib.import_module(mod_name), name)
        except (ImportError, AttributeError) as e:
            last = e
    raise pickle.UnpicklingError(f"cannot find {module}.{name}: {last}")


class RestrictedUnpickler(pickle.Unpickler):
    """:class:`pickle.Unpickler` that resolves only the ``(module, name)`` pairs of ``allowed``."""

    def __init__(self, file: BinaryIO, allowed: frozenset[tuple[str, str]], **kwargs):
        super().__init__(file, **kwargs)
        self.allowed = allowed

    def find_class(self, module: str, name: str):
        # Python 2 names (``__builtin__.set``), mapped as pickle.Unpickler does; checked after mapping
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) not in self.allowed:
            raise UnsafePickle(f"refused global {module}.{name} (only {describe(self.allowed)} may be rebuilt)")
        return _resolve(module, name)

    def persistent_load(self, pid):
        raise UnsafePickle(f"refused persistent id {pid!r}")


def describe(allowed: frozenset[tuple[str, str]]) -> str:
    names = sorted({f"{m.split('.')[0]}.{n}" for m, n in allowed})
    return ", ".join(names)


def restricted_load(file: BinaryIO, allowed: frozenset[tuple[str, str]], **kwargs):
    """Unpickle one object from ``file`` admitting only the globals of ``allowed``.
    Raises :class:`UnsafePickle` for anything else, and the usual unpickling errors for a
    damaged file."""
    return RestrictedUnpickler(file, allowed, **kwargs).load()


def restricted_loads(data: bytes, allowed: frozenset[tuple[str, str]], **kwargs):
    return restricted_load(io.BytesIO(data), allowed, **kwargs)


__all__ = ["GEOM_GLOBALS", "NUMPY_ARRAY_GLOBALS", "RestrictedUnpickler", "UnsafePickle", "restricted_load",
           "restricted_loads"]

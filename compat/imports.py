"""Import-time work that no run needs at import time, put off until it is used.

jsonschema (imported by Great Expectations through altair, and by the STIX validator)
registers its ``iri`` format checks with ``rfc3987_syntax``, whose module compiles a Lark
Earley grammar as it is imported: over a quarter of the time it took to import Great
Expectations (benchmarks/README.md, M4), paid by every process that validates
(each ``cbm run``, each run of a Dagster deployment) though no suite checks an IRI.
``defer_iri_grammar`` puts a stand-in module in its place whose functions import the real
module on first use, so a format check behaves exactly as before, only later.

Great Expectations also imports ``scipy.stats`` for an expectation no suite of ours uses (KL
divergence): a second share of every validating process's start (M4). ``defer_unused`` has Python's own
``importlib.util.LazyLoader`` run it on its first attribute access instead: importing is the
same, only later. (It only helps a submodule reached through its package, as GX reaches
``from scipy import stats``: ``import altair``, just as unused, reads the module at once. Not
boto3, which GX imports too: object storage uses it from several threads, and the lazy loader
of this Python is not thread-safe.)
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types

_NAME = "rfc3987_syntax"
_lock = threading.Lock()


def _real() -> types.ModuleType:
    with _lock:
        module = sys.modules.get(_NAME)
        if module is None or getattr(module, "__cbm_stand_in__", False):
            sys.modules.pop(_NAME, None)
            module = importlib.import_module(_NAME)
        return module


class _StandIn(types.ModuleType):
    __cbm_stand_in__ = True

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(_real(), name)


def is_valid_syntax(term: str, value: str) -> bool:
    """``rfc3987_syntax.is_valid_syntax``, from the real module, imported on first call."""
    return _real().is_valid_syntax(term, value)


UNUSED_AT_IMPORT = ("scipy.stats",)


def defer_unused(names: tuple[str, ...] = UNUSED_AT_IMPORT) -> None:
    """Make each of ``names`` a lazily loaded module until something reads an attribute of
    it (idempotent; a module already imported or not installed is left alone)."""
    for name in names:
        if name in sys.modules:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except ImportError:
            continue
        if spec is None or spec.loader is None:
            continue
        spec.loader = importlib.util.LazyLoader(spec.loader)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        parent, _, child = name.rpartition(".")
        if parent:  # as an import would: the package's attribute names its submodule
            setattr(sys.modules[parent], child, module)


def defer_iri_grammar() -> None:
    """Stand in for ``rfc3987_syntax`` until a format check needs it (idempotent; nothing
    happens once the real module is imported, or when it is not installed)."""
    if _NAME in sys.modules or importlib.util.find_spec(_NAME) is None:
        return
    stand_in = _StandIn(_NAME, "stands in for rfc3987_syntax until it is used (compat.imports)")
    stand_in.is_valid_syntax = is_valid_syntax
    sys.modules[_NAME] = stand_in


def install() -> None:
    """Both deferrals, once per process; from the entry points (``pipelines``, ``checks``),
    before anything imports Great Expectations."""
    defer_iri_grammar()
    defer_unused()

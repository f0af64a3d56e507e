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

Python's cyclic garbage collector, at its default thresholds (700, 10, 10), made six full
collections while a process imported Dagster, Great Expectations and the definitions (each a
walk over every object the imports had made, 400,000 of them: 0.7 s of a 3.1 s import) and
seven in a one-file ``cbm run``: 0.8-1.0 s of it, 1.0 s of the 1M incremental run
(benchmarks/README.md, M34). Almost nothing the imports make is cyclic garbage.
``collect_less_often`` raises the first threshold to 10,000 allocations, so the young
generation is collected 14 times less often and a full collection waits until ten times as
many objects have survived: none in those runs. The objects are the same and freed the same
way; cyclic garbage waits a little longer (at most 10,000 new objects, about a megabyte).
A process that set its own thresholds keeps them.
"""

from __future__ import annotations

import gc
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


DEFAULT_GC_THRESHOLDS = (700, 10, 10)  # CPython's
GC_THRESHOLDS = (10_000, 10, 10)


def collect_less_often() -> None:
    """Raise the collector's first threshold (``GC_THRESHOLDS``) unless the process set its
    own (idempotent)."""
    if gc.get_threshold() == DEFAULT_GC_THRESHOLDS:
        gc.set_threshold(*GC_THRESHOLDS)


def install() -> None:
    """Both deferrals and the collector's thresholds, once per process; from the entry points
    (``pipelines``, ``checks``), before anything imports Great Expectations."""
    collect_less_often()
    defer_iri_grammar()
    defer_unused()

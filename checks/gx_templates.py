"""Data Docs without compiling GX's page templates on every build.

GX's Data Docs views (``DefaultJinjaView`` and its subclasses) each make a new Jinja
``Environment``, so every page of every build compiled its templates again: about half of a
Data Docs build, which ``cbm run`` does twice (validation, warehouse checks). Jinja can keep
compiled templates in a bytecode cache, checked against each template's source (a changed
template is compiled again). ``install`` gives every GX view one in-memory cache for the
process: the pages are rendered from the same templates, only not compiled twice.
"""

from __future__ import annotations

import threading

from great_expectations.render.view.view import DefaultJinjaView
from jinja2 import BytecodeCache
from jinja2.bccache import Bucket


class CompiledTemplates(BytecodeCache):
    """Compiled Jinja templates by name and source checksum, in this process's memory."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def load_bytecode(self, bucket: Bucket) -> None:
        with self._lock:
            code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)  # ignored unless the source checksum matches

    def dump_bytecode(self, bucket: Bucket) -> None:
        with self._lock:
            self._code[bucket.key] = bucket.bytecode_to_string()

    def clear(self) -> None:
        with self._lock:
            self._code.clear()

    def __len__(self) -> int:
        return len(self._code)


TEMPLATES = CompiledTemplates()


def install() -> None:
    """Give every GX Data Docs view the shared template cache (idempotent)."""
    if getattr(DefaultJinjaView.__init__, "__cbm_templates__", False):
        return
    init = DefaultJinjaView.__init__

    def __init__(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        self.env.bytecode_cache = TEMPLATES

    __init__.__cbm_templates__ = True
    DefaultJinjaView.__init__ = __init__

"""Patches of libraries' internals: one module per library (``compat.gx``, ``compat.dagster``,
``compat.imports``), applied from the entry points (the CLI, the Dagster definitions, the
validation stack), never from the domain package ``cbm``. Each patch has a test that fails
loudly when its library changes (``tests/test_compat.py``), and each module checks the
library's version before it patches (``check_version``)."""

from __future__ import annotations


class CompatError(RuntimeError):
    """The installed library is not the one a patch was written for: the message says which."""


def check_version(library: str, installed: str, supported: str) -> None:
    """Refuse to patch a library whose version does not start with ``supported`` (the
    release line the patches were written against): an upgrade must come with a look at the
    patches (``requirements.lock`` pins the tested one)."""
    if not installed.startswith(supported):
        raise CompatError(
            f"{library} {installed} is installed; compat/ patches its internals as of "
            f"{supported}x: check each patch (tests/test_compat.py) before moving the pin"
        )

"""``python -m pipelines.cli``: the same as the ``cbm`` command."""

from pipelines.cli import console_main

console_main()

"""What a validation found, as the assets read it: plain data, no Great Expectations.

The asset modules import these at load time; ``checks.validation`` (GX itself) is imported
only where rows are validated, so a process that validates nothing never loads GX
(benchmarks/README.md, M22).
"""

from __future__ import annotations

from dataclasses import dataclass, field

INDEX_COLUMNS = ["submission_sha", "row_number", "report_id"]
SAMPLES = 5  # failing values kept per finding for the asset check metadata


@dataclass
class Finding:
    rule: str
    expectation: str
    column: str | None
    severity: str
    reason: str
    unexpected_count: int
    query: str | None = None  # SQL selecting the failing rows (index columns + value_column)
    value_column: str | None = None
    samples: list[str] = field(default_factory=list)

    def sample(self, n: int = 5) -> list[str]:
        return [s[:80] for s in self.samples[:n]]


@dataclass
class SuiteResult:
    suite: str
    table: str
    evaluated: int
    findings: list[Finding]
    docs_url: str | None
    result_id: object = None  # GX ValidationResultIdentifier of this run (for Data Docs)

    @property
    def critical(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "critical"]

    def summary(self) -> dict:
        return {
            f.rule + (f":{f.column}" if f.column else ""): f.unexpected_count for f in self.findings
        }


def data_docs_run_name(names: list[str]) -> str:
    """The name Data Docs gives a validation run: what it checked (a submission's partition
    key, ``PARTY/file@hash``; several: how many, the first and the last of the batch). It
    names a folder of GX's result store: a slash would make another folder, so it is written
    ``PARTY-file@hash``, and no space (a folder name shell tools take whole)."""
    shown = [name.replace("/", "-").replace(" ", "_") for name in names]
    if len(shown) <= 1:
        return shown[0] if shown else "no-submission"
    return f"{len(shown)}-submissions_{shown[0]}_to_{shown[-1]}"

"""Every operator mistake gets one line naming what and where, exit 2, never a traceback
(contract §6), through the real `cbm` entry point (a child process, as an operator runs it)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cbm.protection import new_key_file
from cbm.signatures import new_party_key
from tests.conftest import TEST_KEY, write_registry

ROOT = Path(__file__).resolve().parent.parent


def cbm(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    # none of the operator's own CBM_ settings; CBM_WARM=0 (conftest) stays: never a warm process
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CBM_") or k == "CBM_WARM"}
    environ |= {"CBM_PSEUDONYM_KEY": TEST_KEY} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=cwd,
        timeout=120,
    )


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("mistakes")
    (base / "inbox").mkdir()
    write_registry(base / "registry")
    (base / "a_file").write_text("not a folder\n")
    new_party_key("ALPHA", base / "signing.key")
    new_key_file(base / "pseudonym.key")
    return base


def run_args(base: Path, **override: str) -> list[str]:
    flags = {
        "--inbox": str(base / "inbox"),
        "--registry": str(base / "registry"),
        "--workdir": str(base / "work"),
        "--publish": str(base / "publish"),
    } | {f"--{k.replace('_', '-')}": v for k, v in override.items()}
    return ["run", *(x for kv in flags.items() for x in kv)]


def policy_with(base: Path, name: str, **change) -> Path:
    """A copy of the registry whose policy.yaml has one value changed."""
    registry = write_registry(base / name)
    policy = yaml.safe_load((registry / "policy.yaml").read_text())
    (registry / "policy.yaml").write_text(yaml.safe_dump(policy | change))
    return registry


def registry_with(base: Path, name: str, file: str, text: str) -> Path:
    """A copy of the registry with one file's text replaced."""
    registry = write_registry(base / name)
    (registry / file).write_text(text)
    return registry


CASES = {
    # name: (arguments as a function of the folders, environment, words the line must hold)
    "workers not a number": (
        lambda b: run_args(b),
        {"CBM_WORKERS": "two"},
        ["CBM_WORKERS", "'two'", "1 or more"],
    ),
    "workers zero": (lambda b: run_args(b), {"CBM_WORKERS": "0"}, ["CBM_WORKERS", "'0'"]),
    "DuckDB memory limit not an amount": (
        lambda b: run_args(b),
        {"CBM_DUCKDB_MEMORY": "lots"},
        ["CBM_DUCKDB_MEMORY", "'lots'", "2GiB"],
    ),
    "DuckDB memory limit with a quote": (
        lambda b: run_args(b),
        {"CBM_DUCKDB_MEMORY": "1GB'; DROP TABLE x; --"},
        ["CBM_DUCKDB_MEMORY", "memory limit"],
    ),
    "event batch size not a number": (
        lambda b: run_args(b),
        {"DAGSTER_EVENT_BATCH_SIZE": "abc"},
        ["DAGSTER_EVENT_BATCH_SIZE", "'abc'", ">= 0"],
    ),
    "Arrow allocator misspelt": (
        lambda b: run_args(b),
        {"ARROW_DEFAULT_MEMORY_POOL": "jemaloc"},
        ["ARROW_DEFAULT_MEMORY_POOL", "'jemaloc'", "mimalloc, jemalloc, system"],
    ),
    "inbox on object storage": (
        lambda b: run_args(b, inbox="s3://bucket/inbox"),
        {},
        ["--inbox s3://bucket/inbox", "local folders", "docs/deployment.md"],
    ),
    "publish is a file": (
        lambda b: run_args(b, publish=str(b / "a_file")),
        {},
        ["--publish", "a_file", "is a file"],
    ),
    "workdir under a file": (
        lambda b: run_args(b, workdir=str(b / "a_file" / "work")),
        {},
        ["--workdir", "a_file is a file"],
    ),
    "inbox missing": (lambda b: run_args(b, inbox=str(b / "nope")), {}, ["--inbox", "nope"]),
    "registry is a file": (
        lambda b: run_args(b, registry=str(b / "a_file")),
        {},
        ["--registry", "is a file"],
    ),
    "small_cell_k in words": (
        lambda b: run_args(b, registry=str(policy_with(b, "r1", small_cell_k="five"))),
        {},
        ["policy.yaml", "small_cell_k", "whole number", "five"],
    ),
    "thresholds in words": (
        lambda b: run_args(b, registry=str(policy_with(b, "r2", escalation_thresholds="high"))),
        {},
        ["policy.yaml", "escalation_thresholds", "high"],
    ),
    "alert smtp without a port": (
        lambda b: run_args(
            b,
            registry=str(
                policy_with(
                    b,
                    "r3",
                    alerts={"email": {"smtp": "mail.example", "from": "a@b.c", "to": "d@e.f"}},
                )
            ),
        ),
        {},
        ["policy.yaml", "alerts.email", "mail.example", "host:port"],
    ),
    "key not hex": (
        lambda b: run_args(b),
        {"CBM_PSEUDONYM_KEY": "abc"},
        ["CBM_PSEUDONYM_KEY", "not hexadecimal", "<version>:<hex>"],
    ),
    "key file missing": (
        lambda b: run_args(b),
        {"CBM_PSEUDONYM_KEY": "", "CBM_KEY_FILE": "/nonexistent/key.json"},
        ["/nonexistent/key.json", "no such file", "cbm keygen-pseudonym"],
    ),
    "key file not JSON": (
        lambda b: run_args(b),
        {"CBM_PSEUDONYM_KEY": "", "CBM_KEY_FILE": "__a_file__"},
        ["a_file", "not JSON", "cbm keygen-pseudonym"],
    ),
    "key file a party's signing key": (
        lambda b: run_args(b),
        {"CBM_PSEUDONYM_KEY": "", "CBM_KEY_FILE": "__signing_key__"},
        ["signing.key", "no 'key_version' field", "CBM_SIGNING_KEY_FILE"],
    ),
    "registry file not YAML": (
        lambda b: run_args(b, registry=str(registry_with(b, "r4", "parties.yaml", "parties: [\n"))),
        {},
        ["parties.yaml", "not valid YAML", "line 2, column 1"],
    ),
    "as-of in day/month/year": (
        lambda b: [*run_args(b), "--as-of", "23/11/2026"],
        {},
        ["--as-of", "23/11/2026", "ISO 8601"],
    ),
    "as-of without offset": (
        lambda b: [*run_args(b), "--as-of", "2026-01-01T00:00:00"],
        {},
        ["--as-of", "UTC offset"],
    ),
    "typo in a flag": (lambda b: ["run", "--inbx", "x"], {}, ["--inbx", "did you mean --inbox"]),
    "reports not a number": (
        lambda b: ["generate", "--out", str(b / "g"), "--reports", "many"],
        {},
        ["--reports", "many"],
    ),
    "generate into a file": (
        lambda b: ["generate", "--out", str(b / "a_file")],
        {},
        ["--out", "is a file"],
    ),
    "gx results kept zero": (
        lambda b: run_args(b),
        {"CBM_GX_KEEP_RESULTS": "0"},
        ["CBM_GX_KEEP_RESULTS", ">= 1"],
    ),
    "dagster home is a file": (
        lambda b: run_args(b),
        {"DAGSTER_HOME": "__a_file__"},
        ["DAGSTER_HOME", "is a file"],
    ),
    "status of a workdir without warehouse": (
        lambda b: ["status", "--workdir", str(b / "inbox")],
        {},
        ["no warehouse"],
    ),
    "status of a file": (
        lambda b: ["status", "--workdir", str(b / "a_file")],
        {},
        ["--workdir", "is a file"],
    ),
    "verify a missing release": (
        lambda b: ["verify-release", str(b / "nope")],
        {},
        ["nope", "does not exist"],
    ),
    "rederive from a folder that is not a bundle": (
        lambda b: ["rederive", str(b / "inbox"), "--release", str(b / "inbox")],
        {},
        ["--release", "inbox", "not a release folder"],
    ),
    "rederive into a folder in use": (
        lambda b: ["rederive", str(b / "inbox"), "--release", str(b), "--workdir", str(b)],
        {},
        ["--workdir", "not empty"],
    ),
    "rederive a missing bundle": (
        lambda b: ["rederive", str(b / "nope"), "--release", str(b)],
        {},
        ["nope", "not a folder"],
    ),
    "sign with a key that is not one": (
        lambda b: ["sign", "--key", str(b / "a_file"), str(b / "a_file")],
        {},
        ["a_file", "not a signing key file", "not JSON"],
    ),
    "sign with the pseudonymisation key": (
        lambda b: ["sign", "--key", str(b / "pseudonym.key"), str(b / "a_file")],
        {},
        ["pseudonym.key", "no 'party' field", "CBM_KEY_FILE"],
    ),
    "sign with a key file that is not there": (
        lambda b: ["sign", "--key", str(b / "nope.key"), str(b / "a_file")],
        {},
        ["nope.key", "no such file", "cbm keygen"],
    ),
    "docs for a missing workdir": (
        lambda b: ["docs", "--workdir", str(b / "nope")],
        {},
        ["--workdir", "nope", "does not exist"],
    ),
    "docs before any run": (
        lambda b: ["docs", "--workdir", str(b / "inbox")],
        {},
        ["no Data Docs", "cbm run"],
    ),
    "docs on a port that does not exist": (
        lambda b: ["docs", "--workdir", str(b / "inbox"), "--port", "99999"],
        {},
        ["--port", "99999", "from 1 to 65535"],
    ),
    "keygen into a file's folder": (
        lambda b: ["keygen", "--party", "ALPHA", "--out", str(b / "a_file" / "k.json")],
        {},
        ["--out", "a_file is a file"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_one_line_exit_2_no_traceback(folders, case):
    make_args, env, words = CASES[case]
    files = {"__a_file__": folders / "a_file", "__signing_key__": folders / "signing.key"}
    env = {k: str(files.get(v, v)) for k, v in env.items()}
    result = cbm(*make_args(folders), env=env)
    err = result.stderr.strip()
    assert result.returncode == 2, (result.returncode, err, result.stdout)
    assert "Traceback" not in err + result.stdout
    assert len(err.splitlines()) == 1, err
    for word in words:
        assert word in err, (word, err)


def test_version_and_help_name_the_environment_and_exit_codes():
    version = cbm("--version")
    assert version.returncode == 0 and version.stdout.startswith("cbm-verify ")
    helptext = cbm("run", "--help").stdout
    for word in ("--inbox", "--as-of", "CBM_KEY_FILE", "CBM_PSEUDONYM_KEY", "exit codes", "2  it"):
        assert word in helptext, word

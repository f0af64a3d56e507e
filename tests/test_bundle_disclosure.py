"""A member bundle names no one it need not (issue #36; docs/disclosure.md, "What the member
bundle holds"): whoever joins everything in it recovers no code of a party a release never
names, no link between a named party and its pseudonym beyond what verification needs, no
row above what members may see, and no operational configuration; ``cbm rederive`` still
gives the same bytes."""

import json
from pathlib import Path

import duckdb
import yaml

from pipelines.cli import main
from tests.conftest import incident, write_csv

HOOK = "https://alerts.invalid/hook-canary"


def set_policy(project, **changes) -> None:
    path = project.registry / "policy.yaml"
    policy = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if value is None:
            policy.pop(key, None)
        else:
            policy[key] = value
    path.write_text(yaml.safe_dump(policy))


def deployment(project, **policy):
    set_policy(project, alerts={"webhook": {"url": HOOK}}, **policy)
    write_csv(
        project.inbox / "ALPHA" / "incidents_a.csv",
        [
            incident("A-GREEN", alleged_party="BRAVO"),
            incident("A-AMBER", tlp="AMBER", alleged_party="BRAVO", region="LVA"),
            incident("STRICTCANARY", tlp="AMBER+STRICT", alleged_party="BRAVO", region="LTU"),
            incident("REDCANARY", tlp="RED", alleged_party="BRAVO", region="POL"),
        ],
    )
    write_csv(
        project.inbox / "ACADEMY" / "incidents_o.csv",
        [incident("O-1", alleged_party="BRAVO"), incident("O-2", alleged_party="ALPHA")],
    )
    summary = project.run()
    release = summary["latest_release"]
    return project.workdir / "bundles" / release, Path(summary["release_path"])


def every_value(bundle: Path) -> list[tuple[str, tuple]]:
    """(file, row) of every row of every Parquet table in the bundle, as text."""
    out = []
    con = duckdb.connect()
    for f in sorted(bundle.rglob("*.parquet")):
        for row in con.execute("SELECT * FROM read_parquet(?)", [str(f)]).fetchall():
            out.append(
                (f.relative_to(bundle).as_posix(), tuple("" if v is None else str(v) for v in row))
            )
    return out


def test_a_bundle_names_no_one_it_need_not_and_still_re_derives(project, tmp_path, capsys):
    bundle, release = deployment(project)
    pseudonyms = dict(project.query("SELECT code, pseudonym FROM party_directory"))
    rows = every_value(bundle)
    texts = {
        f.relative_to(bundle).as_posix(): f.read_text()
        for f in bundle.rglob("*")
        if f.suffix in (".yaml", ".json")
    }
    everything = json.dumps(rows) + json.dumps(texts)
    # no operational configuration, no row above what members may see
    assert HOOK not in everything and "alerts" not in texts["registry/policy.yaml"]
    assert "STRICTCANARY" not in everything and "REDCANARY" not in everything
    assert "A-AMBER" in everything  # policy.yaml names the members AMBER's recipients
    # ACADEMY is never named by a release: its code is nowhere, its pseudonym stands alone
    assert "ACADEMY" not in everything
    assert pseudonyms["ACADEMY"] in everything
    directory = (
        duckdb.connect()
        .execute(
            "SELECT * FROM read_parquet(?)", [str(bundle / "tables" / "party_directory.parquet")]
        )
        .fetchall()
    )
    academy = [r for r in directory if r[1] == pseudonyms["ACADEMY"]]
    assert [(r[0], r[2].startswith("class-"), r[4]) for r in academy] == [
        (pseudonyms["ACADEMY"], True, None)
    ]
    # ALPHA and BRAVO are named (alleged, obligated) and labelled, and report nothing about
    # themselves: no row of any table holds a code beside its own pseudonym
    for code in ("ALPHA", "BRAVO"):
        assert not [r for _, r in rows if code in r and pseudonyms[code] in r], code
    # and a member re-derives the release from it, byte for byte
    capsys.readouterr()
    assert main(["rederive", str(bundle), "--release", str(release)]) == 0, capsys.readouterr()


def test_without_amber_recipients_amber_is_neither_verified_nor_in_the_bundle(project):
    bundle, _ = deployment(project, amber_recipients=None)
    everything = json.dumps(every_value(bundle))
    assert "A-GREEN" in everything and "A-AMBER" not in everything
    assert project.query("SELECT count(*) FROM verification_incidents WHERE tlp = 'AMBER'") == [
        (0,)
    ]
    assert project.query("SELECT max_tlp_rank FROM verification_scope") == [(1,)]

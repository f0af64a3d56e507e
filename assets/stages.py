"""What the assets of one stage share, declared once: their group in the UI, the team that
owns them, whether declarative automation refreshes them, and the pool of warehouse writers.

A module declares its stage once (``VERIFIED = stage("verified", VERIFICATION,
automated=True)``) and spreads it into each ``dg.asset``/``dg.AssetSpec``
(``**VERIFIED``); an op that writes the warehouse adds ``pool=WAREHOUSE_POOL``.
"""

from assets.partitions import refresh_on_new_data

INGESTION = "team:ingestion"
VERIFICATION = "team:verification"
PUBLICATION = "team:publication"

# The stages (the lineage's groups), in the order the data goes through them: the verifier
# guide's lineage table and the browser suite's stage-by-stage screenshots follow it.
STAGES = (
    "registry",
    "landing",
    "staged",
    "anonymised",
    "validated",
    "verified",
    "indicators",
    "alerts",
    "published",
)

# one writer of the warehouse file at a time (docs/deployment.md, "the warehouse pool")
WAREHOUSE_POOL = "warehouse"


def stage(group: str, owner: str, automated: bool = False) -> dict:
    """The settings of one stage's assets; ``automated``: kept up to date by declarative
    automation when upstream data changes (``refresh_on_new_data``)."""
    settings = {"group_name": group, "owners": [owner]}
    if automated:
        settings["automation_condition"] = refresh_on_new_data
    return settings

"""cbm-verify assets: one module per stage, thin; they call the domain (``cbm``), ``checks``
and ``warehouse``, and never each other. ``resources``, ``partitions``, ``metadata`` and
``stages`` are the Dagster vocabulary the stages share."""

import warnings

import dagster as dg

# BackfillPolicy.single_run (one run per partition range) is what the ingestion assets need;
# Dagster marks the parameter beta and would say so on every start of `cbm run`.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message="Parameter `backfill_policy`")
# A check evaluated per submission partition (submission_outcome) is a preview feature used on
# purpose; Dagster would say so on every load of the code location. (Importing Great
# Expectations used to hide it: GX is now loaded only where rows are validated.)
warnings.filterwarnings(
    "ignore",
    category=dg.PreviewWarning,
    message="Specifying a partitions_def on an AssetCheckSpec",
)

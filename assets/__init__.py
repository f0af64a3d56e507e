"""cbm-verify assets: one module per stage, thin; they call the domain (``cbm``), ``checks``
and ``warehouse``, and never each other. ``resources``, ``partitions``, ``metadata`` and
``stages`` are the Dagster vocabulary the stages share."""

import warnings

import dagster as dg

# BackfillPolicy.single_run (one run per partition range) is what the ingestion assets need;
# Dagster marks the parameter beta and would say so on every start of `cbm run`.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message="Parameter `backfill_policy`")

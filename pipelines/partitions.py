"""Partitions: one dynamic partition per submission (its SHA-256), months for indicators."""

import dagster as dg

submissions_partitions = dg.DynamicPartitionsDefinition(name="submissions")

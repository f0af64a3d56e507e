"""DuckDB warehouse: the resource, the DDL and the SQL that aggregates."""

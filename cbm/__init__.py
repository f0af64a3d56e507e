"""cbm-verify's domain: plain Python, no Dagster, no patch of any library.

The contract, the registries, source protection, signatures, the inbox and its one
ingestion plan, the readers, incident clustering and the release files. Everything else
(assets, checks, warehouse, pipelines) calls this package; it calls nothing above it.
"""

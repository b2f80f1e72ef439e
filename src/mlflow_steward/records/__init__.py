"""Steward's own records: its tables in the registry's database, the engines and locks on them,
and the SQL that reads and writes them (the audit chain, pending writes, alias history, reviews,
deployments and monitor runs). Governance, lifecycle, deployment and monitoring build on it; it
imports none of them."""

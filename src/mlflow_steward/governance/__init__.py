"""Governance: events, the policy engine, the audit log and the governed registry store."""

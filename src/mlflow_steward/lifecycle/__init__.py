"""Lifecycle: aliases first (legacy stages supported), history, rollback and approvals."""

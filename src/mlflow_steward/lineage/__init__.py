"""Lineage, evidence and model cards of registered versions: where a version came from, why it
was allowed, who approved it, where it runs and how it is doing.

- :mod:`.chain`: the lineage of one version (data, run, logged model, version, decisions, moves,
  approvals, deployments, monitoring verdicts) and the reverse look-ups;
- :mod:`.records`: steward's own records, from the registry database or a governed server;
- :mod:`.evidence`: the built-in plugin that records what each governed promotion and deploy rested
  on, and its verification;
- :mod:`.card`: model cards rendered from all of the above.
"""

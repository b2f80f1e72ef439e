"""Built-in policies. Each module is an ordinary plugin registered through the plugin manager."""

#: Built-in policies that decide from the event's facts and do nothing else: the engine runs them
#: on the deciding thread (see ``governance/timeouts.py``). ``approvals`` is not one: it reads
#: steward's own tables, where a read can wait up to the 120 s busy timeout of steward's engine
#: (for a commit being written), far longer than a policy's timeout.
DECIDE_ON_THE_CALLING_THREAD = frozenset(
    {
        "require-signature",
        "required-tags",
        "metric-threshold",
        "allowed-requirements",
        "freeze-window",
        "require-identity",
        "protect-aliases",
        "deploy-requires-alias",
        "edge-bundle",
        "protect-prompt-markers",
        "content-digest",
    }
)

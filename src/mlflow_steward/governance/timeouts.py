"""Where policies run, and how a policy's timeout is kept (policies fail closed on a timeout).

- **Plugin policies** run on :data:`policy_pool`, while the deciding thread waits for each up to
  its timeout: one that hangs is refused, naming it, at its timeout.
- **Steward's built-in policies** decide from the event's facts and do nothing else; they run on
  the deciding thread, which saves a thread hand-off per decision (it cost more than the
  policies themselves). What a fact may wait on beyond the registry's database -- an artifact
  download, a call to a tracking server -- goes through :func:`bounded`, which runs it on the
  pool and gives up at the policy's deadline. Reads of the registry's database wait at most the
  database's own lock timeout, as the write they precede does; a built-in policy that still
  finishes past its timeout is refused (see ``engine.PolicyEngine``).
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

T = TypeVar("T")

#: A worker stays busy while its policy (or bounded read) hangs; the pool grows to this many
#: before work has to queue (and then the policies waiting on it time out, refused).
POLICY_WORKERS = 64
policy_pool = ThreadPoolExecutor(max_workers=POLICY_WORKERS, thread_name_prefix="steward-policy")


class PolicyTimeout(TimeoutError):
    """A policy, or a fact it waited on, did not finish within the policy's timeout."""


#: (deadline on time.monotonic(), timeout in seconds) of the built-in policy deciding on this
#: thread, or None.
_deadline: ContextVar[tuple[float, float] | None] = ContextVar(
    "steward_policy_deadline", default=None
)


@contextmanager
def deciding_until(deadline: float, timeout: float) -> Iterator[None]:
    """Inside the block, :func:`bounded` work gives up at ``deadline``."""
    token = _deadline.set((deadline, timeout))
    try:
        yield
    finally:
        _deadline.reset(token)


def bounded(what: str, work: Callable[[], T]) -> T:
    """``work()``; when a built-in policy is deciding on this thread, run on the policy pool and
    abandoned with :class:`PolicyTimeout` at that policy's deadline.

    ``work`` runs in a copy of the caller's context (MLflow's and steward's context variables,
    such as the active workspace, hold there too), outside the policy's deadline.
    """
    limit = _deadline.get()
    if limit is None:
        return work()
    deadline, timeout = limit

    def run() -> T:
        _deadline.set(None)  # in the copy only: the work itself is not bounded again
        return work()

    future = policy_pool.submit(contextvars.copy_context().run, run)
    try:
        return future.result(timeout=max(0.0, deadline - time.monotonic()))
    except concurrent.futures.TimeoutError:
        if future.done():  # it finished just now, or raised a TimeoutError of its own
            return future.result()
        raise PolicyTimeout(f"no verdict after {timeout:g}s ({what} did not finish)") from None

"""Which stored runs an analysis covers: the latest plan's, or every stored run.

A study may shrink (fewer seeds, axis values, variants): its older runs stay in the store,
finished and valid, but the current spec no longer names them. Tables, tests, exports and
reports cover the latest plan's runs unless asked for every stored run, and say so whenever
the two differ.
"""

from __future__ import annotations

from sparseflow.store.store import StudyStore


def plan_scope(store: StudyStore, all_runs: bool = False) -> tuple[list[str] | None, str | None]:
    """(the run keys to analyse, or None for all; a one-line note, or None).

    The note appears only when the store holds runs outside the latest plan: it says how many,
    and whether they were left out or (``all_runs``) included.
    """
    planned = store.plan_keys()
    if planned is None:  # stored before plans were recorded: every stored run is the plan
        return None, None
    keep = set(planned)
    outside = sum(r.run_key not in keep for r in store.runs())
    if not outside:
        return None, None
    if all_runs:
        return None, (f"note: covering all stored runs, {outside} of them outside the current "
                      f"plan of {len(planned)}")
    return planned, (f"note: covering the current plan's {len(planned)} runs; {outside} stored "
                     "runs outside it (an earlier, larger spec) are left out (--all-runs "
                     "includes them)")

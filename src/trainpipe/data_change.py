"""Has the data changed since an earlier complete job of the same config? job.json keeps what
tells (the config's fingerprint, the data's digest)."""

from __future__ import annotations

from trainpipe.plan import JobPlan
from trainpipe.run_log import fingerprint_of


def identity(plan: JobPlan) -> dict[str, str]:
    """What job.json keeps to tell a later run of the same config that the data changed."""
    return {"config_fingerprint": fingerprint_of(plan), "data_digest": plan.prepared.digest}


def data_change(plan: JobPlan) -> str | None:
    """ "since <run> (digest a → b)" if an earlier complete job of this config saw other data."""
    from trainpipe.runtime.job_state import JobState

    mine = identity(plan)
    earlier = []
    for job_dir in plan.output_dir.parent.iterdir():
        state = JobState.load(job_dir) if job_dir != plan.output_dir else None
        if (
            state
            and state.status == "complete"
            and state.identity.get("config_fingerprint") == mine["config_fingerprint"]
            and state.identity.get("data_digest") != mine["data_digest"]
        ):
            earlier.append((job_dir.stat().st_mtime, job_dir.name, state.identity["data_digest"]))
    if not earlier:
        return None
    _, name, digest = max(earlier)
    return f"since {name} (data digest {digest} → {mine['data_digest']})"

"""Studies: a spec expands to a factorial plan of SC-SDC runs, run by a local process pool
with a durable store."""

from sparseflow.studies.estimate import Estimate, estimate_study
from sparseflow.studies.executor import StudyOutcome, default_jobs, run_study
from sparseflow.studies.plan import Plan, expand, fingerprint
from sparseflow.studies.spec import VARIANTS, ScsdcSpec, StudySpec, load_spec, variant_overrides

__all__ = [
    "VARIANTS",
    "Estimate",
    "Plan",
    "ScsdcSpec",
    "StudyOutcome",
    "StudySpec",
    "default_jobs",
    "estimate_study",
    "expand",
    "fingerprint",
    "load_spec",
    "run_study",
    "variant_overrides",
]

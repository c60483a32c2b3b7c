"""Task and suite definitions: loading, validation, data pinning and content addresses.

Two task formats load into one :class:`TaskSpec`:

- Tripwire's own (``kind:`` key), documented in docs/evals.md, with data from a shipped
  generator or a SHA-256-pinned JSONL file (:mod:`.tripwire_format`);
- lm-evaluation-harness task YAML (``output_type:`` key) for ``multiple_choice`` and
  ``loglikelihood`` tasks on local JSON data, interpreted as lm-eval 0.4 does
  (:mod:`.lmeval_format`).

A task's digest is the SHA-256 of the JCS bytes of its normalised definition, which
includes the SHA-256 of its data, so two labs holding the same digest ran the same items
with the same prompts and metrics. A suite's digest covers its id, version and the task
digests in order; that is the digest a roster pins.

The rooms: :mod:`.files` reads YAML, rows and pins; :mod:`.models` holds the frozen models
and their digests; :mod:`.prompts` builds prompts from rows; the two format modules turn a
file into a model; :mod:`.load` loads tasks and suites.
"""

from node.evals.spec.files import MAX_INCLUDE_DEPTH, file_sha256, read_task_yaml, read_yaml
from node.evals.spec.load import load_suite, load_task, override_num_fewshot, single_task_suite
from node.evals.spec.models import (
    DEFAULT_METRICS,
    KINDS,
    METRICS,
    Generation,
    Kind,
    ProbeSpec,
    SuiteSpec,
    TaskSpec,
)

__all__ = [
    "DEFAULT_METRICS",
    "KINDS",
    "MAX_INCLUDE_DEPTH",
    "METRICS",
    "Generation",
    "Kind",
    "ProbeSpec",
    "SuiteSpec",
    "TaskSpec",
    "file_sha256",
    "load_suite",
    "load_task",
    "override_num_fewshot",
    "read_task_yaml",
    "read_yaml",
    "single_task_suite",
]

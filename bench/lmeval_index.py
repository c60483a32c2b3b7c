"""lm-eval's task index: built per task folder by lm-eval vs the registry indexed once per process.

A suite whose lm-eval tasks sit in several folders (or one process evaluating checkpoints of
several task folders) builds one ``TaskManager`` per folder. lm-eval's own constructor
indexes its whole registry (some 14,000 names) each time; :func:`node.evals.lmeval.task_manager`
indexes the registry once per process and merges each folder's own index over it. This
prints the time of both for ``--folders`` distinct folders, measured in the same run, and
their ratio, and checks that both indexes are equal.

    .venv/bin/python bench/lmeval_index.py --folders 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TASK = """task: bench_index_{i}
dataset_path: json
dataset_kwargs:
  data_files: {{test: "{data}"}}
test_split: test
output_type: multiple_choice
doc_to_text: "Q: {{{{question}}}}\\nA:"
doc_to_choice: choices
doc_to_target: label
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folders", type=int, default=3, help="distinct task folders (default 3)")
    args = ap.parse_args()
    from lm_eval.tasks import TaskManager

    from node.evals.lmeval import task_manager

    with tempfile.TemporaryDirectory() as tmp:
        folders = []
        for i in range(args.folders):
            d = Path(tmp) / f"f{i}"
            d.mkdir()
            (d / "test.jsonl").write_text('{"question": "1+1", "choices": ["2", "3"], "label": 0}\n')
            (d / f"t{i}.yaml").write_text(TASK.format(i=i, data=d / "test.jsonl"))
            folders.append(d)
        t = time.perf_counter()
        own = [TaskManager(include_path=str(d)) for d in folders]
        t_own = time.perf_counter() - t
        t = time.perf_counter()
        shared = [task_manager(d) for d in folders]
        t_shared = time.perf_counter() - t
        same = all(a.task_index == b.task_index and a.all_tasks == b.all_tasks for a, b in zip(own, shared, strict=True))
    print(f"{'index build':34} {'s':>7}")
    print(f"{'lm-eval TaskManager per folder':34} {t_own:7.2f}")
    print(f"{'registry once + folder merged':34} {t_shared:7.2f}")
    print(f"ratio {t_own / t_shared:.2f}x over {args.folders} folders; indexes equal: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())

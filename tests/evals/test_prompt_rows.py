"""Prompt building refuses rows the task file's keys and indices do not fit, by name.

Every lookup a prompt makes with a key or index the task file supplies (a field of an item
or a few-shot example, a choice index, a list answer's first entry) fails as an
:class:`EvalDataError` naming the task, its file, the row and the field; never a bare
``KeyError`` or ``IndexError`` from the middle of a run. What lm-eval runs keeps working:
an unset ``fewshot_config.doc_to_target`` falls back to the task's, and a negative choice
index picks as Python's (lm-eval's ``c[a]``) does.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from node.evals.errors import EvalDataError
from node.evals.spec import load_task, prompts

TEST = [{"q": f"{i}+1=", "choices": [str(i + 1), str(i + 2)], "gold": i % 2} for i in range(4)]


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _lmeval(d: Path, train: list[dict[str, Any]], extra: str = "") -> Path:
    """An lm-eval multiple_choice task, 2-shot from a training split of ``train``."""
    test, tr = _jsonl(d / "test.jsonl", TEST), _jsonl(d / "train.jsonl", train)
    t = d / "lm.yaml"
    t.write_text(
        "task: lm_rows\ndataset_path: json\n"
        f'dataset_kwargs:\n  data_files: {{test: "{test}", train: "{tr}"}}\n'
        "test_split: test\nfewshot_split: train\noutput_type: multiple_choice\nnum_fewshot: 2\n"
        'doc_to_text: "{{q}}"\ndoc_to_choice: choices\ndoc_to_target: gold\n' + extra
    )
    return t


def _refused(t: Path, *needles: str) -> str:
    spec = load_task(t)  # the few-shot pool is read when prompts are built
    with pytest.raises(EvalDataError) as e:
        prompts.contexts(spec)
    msg = str(e.value)
    assert msg.startswith(f"task lm_rows ({t}): few-shot example "), msg
    assert re.search(r"few-shot example \d of split 'train' ", msg), msg
    for n in needles:
        assert n in msg, msg
    return msg


@pytest.mark.parametrize("fewshot_config", ["fewshot_config:\n  doc_to_target: null\n", ""])
def test_few_shot_rows_lacking_the_task_target_field_are_refused(tmp_path, fewshot_config):
    # fewshot_config.doc_to_target null or absent: lm-eval uses the task's doc_to_target, `gold`.
    rows = [{"q": "x", "choices": ["a", "b"], "label": 0}] * 3
    _refused(_lmeval(tmp_path, rows, fewshot_config),
             "has no field 'gold'", "doc_to_target (fewshot_config.doc_to_target is unset)",
             "the row's fields: ['choices', 'label', 'q']")


def test_few_shot_rows_lacking_an_override_field_are_refused(tmp_path):
    rows = [{"question": "x", "choices": ["a", "b"], "label": 0}] * 3
    _refused(_lmeval(tmp_path, rows, 'fewshot_config:\n  doc_to_text: "{{question}}"\n  doc_to_target: gold\n'),
             "has no field 'gold', which fewshot_config.doc_to_target names")
    rows = [{"q": "x", "gold": 0}] * 3
    _refused(_lmeval(tmp_path, rows), "has no field 'choices'", "doc_to_choice (fewshot_config.doc_to_choice is unset)")


def test_a_choice_spec_naming_no_column_is_a_template_as_in_lm_eval(tmp_path):
    # `options` is no column of the evaluated split, so lm-eval renders it as a constant template.
    rows = [{"q": "x", "choices": ["a", "b"], "options": ["c", "d"], "gold": 0}] * 3
    _refused(_lmeval(tmp_path, rows, "fewshot_config:\n  doc_to_choice: options\n"),
             "renders fewshot_config.doc_to_choice 'options' to 'options', not a list literal")


def test_an_unset_fewshot_target_falls_back_to_the_tasks_as_in_lm_eval(tmp_path):
    rows = [{"q": f"t{i}", "choices": ["a", "b"], "gold": 1} for i in range(3)]
    spec = load_task(_lmeval(tmp_path, rows, "fewshot_config:\n  doc_to_target: null\n"))
    ctx = prompts.contexts(spec, 1)[0]
    assert re.fullmatch(r"t\d b\n\nt\d b\n\n0\+1=", ctx), ctx


def test_an_empty_target_list_is_refused(tmp_path):
    rows = [{"q": "x", "choices": ["a", "b"], "gold": 0, "ans": []}] * 3
    _refused(_lmeval(tmp_path, rows, 'fewshot_config:\n  doc_to_target: "{{ans}}"\n'),
             "gives fewshot_config.doc_to_target []", "empty answer list")


@pytest.mark.parametrize("gold", [2, 5, -3])
def test_a_few_shot_choice_index_out_of_range_is_refused(tmp_path, gold):
    rows = [{"q": "x", "choices": ["a", "b"], "gold": gold}] * 3
    _refused(_lmeval(tmp_path, rows), f"index {gold}, outside its 2 choices ['a', 'b']",
             "doc_to_target (fewshot_config.doc_to_target is unset)")


def test_a_negative_index_picks_as_lm_eval_does(tmp_path):
    rows = [{"q": f"t{i}", "choices": ["a", "b"], "gold": -1} for i in range(3)]
    assert re.fullmatch(r"t\d b\n\nt\d b\n\n0\+1=", prompts.contexts(load_task(_lmeval(tmp_path, rows)), 1)[0])


def test_a_template_failing_on_a_few_shot_row_names_the_row(tmp_path):
    rows = [{"question": "x", "choices": ["a", "b"], "gold": 0}] * 3
    _refused(_lmeval(tmp_path, rows), "fails the doc_to_text (fewshot_config.doc_to_text is unset) template",
             "'q' is undefined")


def test_fixed_samples_are_named_by_their_place_in_fewshot_config(tmp_path):
    t = _lmeval(tmp_path, [], "fewshot_config:\n  samples:\n    - {q: x, choices: [a, b]}\n"
                              "    - {q: y, choices: [a, b]}\n")
    t.write_text(t.read_text().replace("fewshot_split: train\n", ""))
    with pytest.raises(EvalDataError, match=r"few-shot example fewshot_config\.samples\[[01]\] has no field 'gold'"):
        prompts.contexts(load_task(t), 1)


def test_an_evaluated_item_lacking_a_field_is_refused_at_load(tmp_path):
    t = _lmeval(tmp_path, [])
    _jsonl(tmp_path / "test.jsonl", [*TEST[:2], {"q": "z", "gold": 0}])
    with pytest.raises(EvalDataError, match=re.escape(f"task lm_rows ({t}): item 2 has no field 'choices', "
                                                      "which doc_to_choice names")):
        load_task(t)


def _tripwire(d: Path, rows: list[dict[str, Any]], body: str) -> Path:
    import hashlib

    data = _jsonl(d / "data.jsonl", rows)
    t = d / "tw.yaml"
    t.write_text(f'task: tw\ndata: {{path: data.jsonl, sha256: "{hashlib.sha256(data.read_bytes()).hexdigest()}"}}\n'
                 + body)
    return t


@pytest.mark.parametrize(("target", "needle"), [
    (7, "gives doc_to_target index 7, outside its 2 choices"),
    ([], "gives doc_to_target [], an empty answer list"),
])
def test_tripwire_few_shot_answers_out_of_range_are_refused(tmp_path, target, needle):
    # A generate_until task whose answer indexes its choices: the items load, the examples do not.
    rows = [{"q": f"{i}?", "choices": ["a", "b"], "t": target} for i in range(3)]
    t = _tripwire(tmp_path, rows, "kind: generate_until\ndoc_to_text: q\ndoc_to_choice: choices\n"
                                  "doc_to_target: t\nnum_fewshot: 1\n")
    spec = load_task(t)
    with pytest.raises(EvalDataError, match=re.escape(f"task tw ({t}): few-shot example (item ") + r"\d\) "
                       + re.escape(needle)):
        prompts.contexts(spec)

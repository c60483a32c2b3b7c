"""Task and suite specs are frozen, validated models: bad files fail by file and field.

A loaded :class:`TaskSpec` cannot be changed (a change, such as ``--num-fewshot``, is a new,
re-validated task), refuses unknown fields, and every class of bad task file is an
:class:`EvalSpecError` whose message names the file and the field, never a raw pydantic
``ValidationError``. Digests are signed into eval results, so the shipped tasks' digests
are pinned here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from node.evals.errors import EvalSpecError, NativeUnsupportedError, UnknownMetricError
from node.evals.spec import (
    Generation,
    ProbeSpec,
    SuiteSpec,
    TaskSpec,
    load_suite,
    load_task,
    override_num_fewshot,
    prompts,
    single_task_suite,
)

SPECS = Path(__file__).resolve().parents[2] / "specs"
ROWS = [{"q": f"{i}+1=", "choices": [str(i + 1), str(i + 2)], "gold": 0} for i in range(6)]


def _data(d: Path) -> str:
    f = d / "data.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return hashlib.sha256(f.read_bytes()).hexdigest()


def _task(d: Path, body: str) -> Path:
    digest = _data(d)
    t = d / "t.yaml"
    t.write_text(f'task: t\ndata: {{path: data.jsonl, sha256: "{digest}"}}\n' + body)
    return t


MC = "kind: multiple_choice\ndoc_to_text: q\n"
GEN = "kind: generate_until\ndoc_to_text: q\ndoc_to_target: gold\n"


def _lmeval(d: Path, extra: str = "") -> Path:
    _data(d)
    t = d / "lm.yaml"
    t.write_text(
        "task: lm_t\ndataset_path: json\n"
        f'dataset_kwargs:\n  data_files: {{test: "{d / "data.jsonl"}"}}\n'
        "test_split: test\nfewshot_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "{{q}}"\ndoc_to_choice: choices\ndoc_to_target: gold\n' + extra
    )
    return t


def test_a_loaded_task_and_suite_cannot_be_changed():
    task = load_task(SPECS / "evals" / "arithmetic_mc.yaml")
    suite = single_task_suite(task)
    for obj, field, value in [(task, "num_fewshot", 3), (task, "name", "other"), (task, "docs", []),
                              (suite, "tasks", []), (task.generation, "samples", 4)]:
        with pytest.raises(ValidationError, match="frozen"):
            setattr(obj, field, value)
    assert task.num_fewshot == 0 and task.name == "arithmetic_mc" and suite.tasks == [task]


def test_unknown_fields_are_refused():
    task = load_task(SPECS / "evals" / "arithmetic_mc.yaml")
    fields = {k: getattr(task, k) for k in TaskSpec.model_fields}
    with pytest.raises(ValidationError, match="Extra inputs"):
        TaskSpec.model_validate({**fields, "temperature": "0.5"})
    with pytest.raises(ValidationError, match="Extra inputs"):
        Generation.model_validate({"max_new_tokens": 3})
    with pytest.raises(ValidationError, match="Extra inputs"):
        ProbeSpec.model_validate({"path": Path("p"), "sha256": "0" * 64, "layer": 0, "bias": 1})
    with pytest.raises(ValidationError, match="Extra inputs"):
        SuiteSpec.model_validate({"id": "s", "version": "1", "source": Path("s"), "tasks": [task], "roster": "r"})


@pytest.mark.parametrize(("body", "field", "needle", "error"), [
    (MC + "num_fewshot: -1\n", "num_fewshot", "greater than or equal to 0", EvalSpecError),
    (MC + "num_fewshot: true\n", "num_fewshot", "valid integer", EvalSpecError),
    (MC + "num_fewshot: '2'\n", "num_fewshot", "valid integer", EvalSpecError),
    (MC + "fewshot_seed: -5\n", "fewshot_seed", "greater than or equal to 0", EvalSpecError),
    (MC.replace("multiple_choice", "essay"), "kind", "unknown task kind 'essay'", EvalSpecError),
    (MC.replace("multiple_choice", "[multiple_choice]"), "kind", "unknown task kind", EvalSpecError),
    (MC + "metrics: [acc, exact_match]\n", "metrics", "unknown metric 'exact_match' for a multiple_choice", UnknownMetricError),
    (MC + "metrics: acc\n", "metrics", "valid tuple", EvalSpecError),
    (MC + "fewshot_sampler: random\n", "fewshot_sampler", "'default' or 'first_n'", EvalSpecError),
    (MC + "doc_to_text: [q]\n", "doc_to_text", "must be a field name", EvalSpecError),
    (MC + "target_delimiter: 3\nprompt_prefix: 1\nbootstrap: 3\n", "bootstrap", "greater than or equal to 10", EvalSpecError),
    (GEN + "generation: {temperature: hot, do_sample: true}\n", "generation.temperature", "decimal number", EvalSpecError),
    (GEN + "generation: {temperature: -0.5}\n", "generation.temperature", "must be > 0", EvalSpecError),
    (GEN + "generation: {temperature: 0, do_sample: true}\n", "generation.temperature", "must be > 0", EvalSpecError),
    (GEN + "generation: {top_p: 1.5}\n", "generation.top_p", "(0, 1]", EvalSpecError),
    (GEN + "generation: {samples: 0}\n", "generation.samples", "greater than or equal to 1", EvalSpecError),
    (GEN + "generation: {samples: 3, do_sample: false}\n", "generation.samples", "needs do_sample", EvalSpecError),
    (GEN + "generation: {max_gen_toks: 0}\n", "generation.max_gen_toks", "greater than or equal to 1", EvalSpecError),
    (GEN + "generation: {until: ['']}\n", "generation.until.0", "at least 1 character", EvalSpecError),
    (GEN + "generation: {k: []}\n", "generation.k", "at least 1 item", EvalSpecError),
    (GEN + "generation: {do_sample: 1}\n", "generation.do_sample", "valid boolean", EvalSpecError),
    (GEN + "generation: {k: [4], samples: 2}\nmetrics: [pass_at_k]\n", "generation", "needs generation.samples >= 4",
     EvalSpecError),
])
def test_each_bad_task_field_is_a_spec_error_naming_file_and_field(tmp_path, body, field, needle, error):
    t = _task(tmp_path, body)
    with pytest.raises(EvalSpecError) as e:
        load_task(t)
    assert type(e.value) is error
    assert f"{t} field {field}: " in str(e.value) and needle in str(e.value)
    assert not isinstance(e.value.__cause__, EvalSpecError)  # built from the model's ValidationError


@pytest.mark.parametrize("name", ["bad name!", "-leading", "x" * 200])
def test_a_task_name_with_bad_characters_names_the_task_key(tmp_path, name):
    t = _task(tmp_path, MC)
    t.write_text(t.read_text().replace("task: t\n", f"task: {json.dumps(name)}\n"))
    with pytest.raises(EvalSpecError, match=r"field task: String should match pattern") as e:
        load_task(t)
    assert str(t) in str(e.value)


def test_a_missing_task_name_is_a_spec_error(tmp_path):
    t = _task(tmp_path, MC)
    t.write_text(t.read_text().replace("task: t\n", ""))
    with pytest.raises(EvalSpecError, match=f"{t} field task: Input should be a valid string"):
        load_task(t)


def test_lmeval_fields_are_named_as_the_file_spells_them(tmp_path):
    t = _lmeval(tmp_path, 'fewshot_config:\n  target_delimiter: 5\n')
    with pytest.raises(EvalSpecError, match=f"{t} field fewshot_config.target_delimiter: Input should be a valid string"):
        load_task(t)
    t = _lmeval(tmp_path, "num_fewshot: -2\n")
    with pytest.raises(EvalSpecError, match="field num_fewshot: Input should be greater than or equal to 0"):
        load_task(t)
    # A sampler lm-eval has and native does not is handed to lm-eval, as before.
    with pytest.raises(NativeUnsupportedError, match=r"fewshot_config\.sampler"):
        load_task(_lmeval(tmp_path, "fewshot_config:\n  sampler: balanced\n"))


def test_bad_suites_name_the_suite_file_and_field(tmp_path):
    _task(tmp_path, MC)
    s = tmp_path / "s.yaml"
    for text, needle in [
        ("suite: 'a b'\nversion: '1'\ntasks: [t.yaml]\n", "field suite: String should match pattern"),
        ("suite: s\ntasks: [t.yaml]\n", "field version: Input should be a valid string"),
        ("suite: s\nversion: '1'\ntasks: []\n", "field tasks: List should have at least 1 item"),
        ("suite: s\nversion: '1'\ntasks: [t.yaml, t.yaml]\n", "field tasks: task names must be unique"),
    ]:
        s.write_text(text)
        with pytest.raises(EvalSpecError, match=needle) as e:
            load_suite(s)
        assert str(s) in str(e.value)
    s.write_text("suite: s\nversion: 2\ntasks: [{path: t.yaml, name: 'x y'}]\n")
    with pytest.raises(EvalSpecError, match=r"t.yaml \(as the suite names it\) field name: String should match"):
        load_suite(s)


def test_override_num_fewshot_returns_a_new_task_and_leaves_the_loaded_one(tmp_path):
    spec = load_task(_lmeval(tmp_path))
    before = spec.digest
    new = override_num_fewshot(spec, 2)
    assert new is not spec and new.num_fewshot == 2 and spec.num_fewshot == 0
    assert spec.digest == before and new.digest != before
    assert new.docs == spec.docs and new.name == spec.name
    # Rebuilding with the file's own count gives the file's task, digest and prompts.
    same = override_num_fewshot(spec, 0)
    assert same.digest == before and prompts.contexts(same, 3) == prompts.contexts(spec, 3)


def test_override_num_fewshot_refuses_what_loading_refuses(tmp_path):
    spec = load_task(_lmeval(tmp_path))
    with pytest.raises(EvalSpecError, match=r"\(--num-fewshot\) field num_fewshot: Input should be greater than or equal to 0"):
        override_num_fewshot(spec, -1)
    with pytest.raises(EvalSpecError, match="field num_fewshot: Input should be a valid integer"):
        override_num_fewshot(spec, True)
    assert spec.num_fewshot == 0
    with pytest.raises(EvalSpecError, match="a Tripwire task file sets num_fewshot itself"):
        override_num_fewshot(load_task(SPECS / "evals" / "arithmetic_mc.yaml"), 2)


def test_an_explicit_zero_is_kept_as_lm_eval_keeps_it(tmp_path):
    spec = load_task(_lmeval(tmp_path, "num_fewshot: 0\n"))
    assert override_num_fewshot(spec, 3) is spec
    with pytest.raises(EvalSpecError, match="greater than or equal to 0"):
        override_num_fewshot(spec, -3)  # checked even when the count is kept


#: Task and suite digests are signed into results: the model migration must not move them.
PINNED = {
    "arithmetic_mc": "127f95a0c385489663c51c314665b1032f6db427fdf99775c7c28b7d12aae265",
    "arithmetic_gen": "d34e751bdee207352eec532a78c6e76ce4deb636fd0da9ae173a7e1c4c3ffdb6",
    "arithmetic_quick": "1def7a3494f60a2b70ee318f19b1456c435be57a1560a1f828449db6f3b2b639",
    "composition_gen": "44f8b0654814d4cf94c5fbeacb1d0161466ba16d01da3dcef8e140494f51a02d",
    "composition_mc": "5eded3b75f03b9a9d9530975bdfd0e0de13329075efc10868236a1097aed6acc",
    "kv_recall_mc": "ec11c192efb0ad47c5f1b4ef029dc69f491be514d3fa39f4730faab715528b51",
    "suite:tripwire-core": "e38c49281061d752d471dba64b567adcb1fbd2aaa33adaa731b055f2c3e5cbf1",
    "suite:tripwire-demo": "9495cd76c754f88c57c72f1f44908d5c8a48bad3eaebe288e670783afa76768b",
}


def test_shipped_task_and_suite_digests_are_unchanged():
    got = {load_task(f).name: load_task(f).digest for f in (SPECS / "evals").glob("*.yaml")}
    got |= {f"suite:{s.id}": s.digest for s in map(load_suite, (SPECS / "suites").glob("*.yaml"))}
    assert got == PINNED

"""Both languages are complete: same keys, same placeholders, and every key the app can ask for exists.

The keys come from the declarations (LESSONS: tabs, experiments, their fields and roles, predictions)
and from the code's syntax tree (literal `t("...")` calls, the message keys of InvalidParams and
ExperimentError), never from regular expressions over the source.
"""

from __future__ import annotations

import ast
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from core.experiment import Experiment
from core.lessons import LESSONS
from core.runner import execute
from ui.i18n import LANGS, _prose, read_strings, string_files, strings
from ui.i18n import LESSONS as LESSON_DIR

ROOT = Path(__file__).resolve().parent.parent
UI_CODE = [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py")), *sorted((ROOT / "ui").glob("*.py"))]
CORE_CODE = sorted((ROOT / "core").rglob("*.py"))
EXPERIMENTS = [experiment for lesson in LESSONS for experiment in lesson.experiments]


def placeholders(text: str) -> set[str]:
    """Return the names of the {placeholders} of a string (format fields, with or without a spec)."""
    import string

    return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(text) if name}


def calls(paths: list[Path], names: set[str]) -> Iterator[ast.Call]:
    """Yield every call of a function or class named in `names` in these files."""
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                if name in names:
                    yield node


def literal(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def test_languages_have_the_same_keys_and_placeholders() -> None:
    en, zh = strings("en"), strings("zh")
    assert en.keys() == zh.keys(), set(en) ^ set(zh)
    assert {k for k in en if placeholders(en[k]) != placeholders(zh[k])} == set()
    assert all(zh[k].strip() for k in zh)


@pytest.mark.parametrize("lang", LANGS)
def test_one_table_per_lesson_plus_a_common_one_and_no_key_twice(lang: str) -> None:
    files = string_files(lang)
    assert [f.stem for f in files] == ["common", *sorted(["classroom", *(lesson.slug for lesson in LESSONS)])]
    keys = [key for path in files for key, _ in read_strings(path)]
    assert sorted({k for k in keys if keys.count(k) > 1}) == []
    for lesson in LESSONS:  # a lesson's strings live in its own table
        keys = {key for key, _ in read_strings(LESSON_DIR / lang / f"{lesson.slug}.toml")}
        own = {key.split(".")[0] for key in keys}
        assert {e.name for e in lesson.experiments} <= own | {lesson.slug}, lesson.slug
        assert {f"nav.{lesson.slug}", f"nav.{lesson.slug}_desc"} <= keys, f"{lesson.slug}: its title lives with it"


def test_every_literal_key_in_the_code_exists() -> None:
    used = {key for call in calls(UI_CODE, {"t", "figure", "table"}) if call.args and (key := literal(call.args[0]))}
    used |= {key for call in calls(UI_CODE, {"figure"}) if len(call.args) > 1 and (key := literal(call.args[1]))}
    assert "run.running" in used, "the scan found the runner's keys"
    assert sorted(k for k in used if "." in k and k not in strings("en")) == []


def test_every_message_key_raised_in_core_has_a_message() -> None:
    keys = {key for call in calls(CORE_CODE, {"InvalidParams"}) if len(call.args) > 1 and (key := literal(call.args[1]))}
    keys |= {key for call in calls(CORE_CODE, {"ExperimentError"}) if call.args and (key := literal(call.args[0]))}
    assert {"out_of_range", "budget", "work_budget", "oom", "runtime", "timeout", "unreadable"} <= keys
    assert sorted(k for k in keys if f"errors.{k}" not in strings("en")) == []


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda lesson: lesson.slug)
def test_every_tab_field_role_choice_and_prediction_has_a_string(lesson: Any) -> None:
    en = strings("en")
    wanted = [f"nav.{lesson.slug}", f"nav.{lesson.slug}_desc", *(f"{lesson.slug}.tabs.{tab}" for tab in lesson.tabs)]
    for experiment in lesson.experiments:
        wanted += [f"{experiment.name}.{role}" for p in variants(experiment) for role in p.roles().values()]
    for prediction in lesson.predictions:
        wanted.append(prediction.question or f"{prediction.experiment.name}.predict_q")
        if prediction.why:
            wanted.append(prediction.why)
    assert sorted({k for k in wanted if k not in en}) == []


def variants(experiment: Experiment[Any, Any]) -> list[Any]:
    """Return the defaults and one Params per option of each choice field (roles may depend on a choice)."""
    out = [experiment.params()]
    for spec in experiment.params.specs():
        if spec.kind == "str" and "choices" in spec.meta:
            for option in spec.meta["choices"]:
                candidate, _ = experiment.params.from_query({f"x.{spec.name}": option}, "x")
                out.append(candidate)
    return out


@pytest.mark.parametrize("slug", ["home", *[lesson.slug for lesson in LESSONS]])
def test_lesson_prose_has_the_same_sections_in_both_languages(slug: str) -> None:
    sections = {lang: _prose(lang, slug) for lang in LANGS}
    assert sections["en"].keys() == sections["zh"].keys()
    assert all(text.strip() for lang in LANGS for name, text in sections[lang].items() if name)
    assert (LESSON_DIR / "zh" / f"{slug}.md").exists()


def test_every_index_op_has_its_caption() -> None:
    index = next(e for e in EXPERIMENTS if e.name == "index")
    ops = next(s for s in index.params.specs() if s.name == "op").meta["choices"]
    assert sorted(f"index.caption_{op}" for op in ops if f"index.caption_{op}" not in strings("en")) == []


def result_type(experiment: Experiment[Any, Any]) -> type:
    return typing.get_type_hints(experiment.run)["return"]  # type: ignore[no-any-return]


GPU_RESULTS = [e for e in EXPERIMENTS if "gpu_only" in typing.get_type_hints(result_type(e))]


@pytest.mark.parametrize("experiment", GPU_RESULTS, ids=lambda e: e.name)
def test_every_part_that_needs_a_gpu_has_a_sentence(experiment: Experiment[Any, Any]) -> None:
    """A Result's gpu_only names the parts that need CUDA and did not run; the page explains each one."""
    result = execute(experiment.run, experiment.params(), device=torch.device("cpu"))
    assert result.gpu_only, "on the CPU the parts that need CUDA are named"
    assert sorted(f"gpu.parts.{part}" for part in result.gpu_only if f"gpu.parts.{part}" not in strings("en")) == []

"""Both languages are complete: same keys, same placeholders, every key the code asks for exists."""

import re
from pathlib import Path

import pytest

from core import accumulation, accumulation_memory, autograd, autograd_mechanics, devices, init, speed
from core.params import InvalidParams
from core.tensors import CREATE_FNS, EXPERIMENTS, INDEX_OPS, SHAPE_OPS
from ui.catalog import LESSONS
from ui.i18n import LANGS, _prose, strings
from ui.i18n import LESSONS as LESSON_DIR

ROOT = Path(__file__).resolve().parent.parent
CODE = [*ROOT.glob("app.py"), *ROOT.glob("views/*.py"), *ROOT.glob("ui/*.py")]
PLACEHOLDER = re.compile(r"\{(\w+)[^}]*\}")


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def test_languages_have_the_same_keys_and_placeholders() -> None:
    en, zh = strings("en"), strings("zh")
    assert en.keys() == zh.keys(), set(en) ^ set(zh)
    assert {k for k in en if placeholders(en[k]) != placeholders(zh[k])} == set()
    assert all(zh[k].strip() for k in zh)


def test_every_literal_key_in_the_code_exists() -> None:
    used = {m for path in CODE for m in re.findall(r"\bt\(\"([\w.]+)\"", path.read_text(encoding="utf-8"))}
    assert used, "the scan found no keys"
    assert sorted(k for k in used if k not in strings("en")) == []


# Every lesson's experiments; a registry key is also the prefix of its strings and URL settings.
REGISTRIES = [EXPERIMENTS, autograd.EXPERIMENTS, autograd_mechanics.EXPERIMENTS, init.EXPERIMENTS, accumulation.EXPERIMENTS,
              accumulation_memory.EXPERIMENTS, speed.EXPERIMENTS, devices.EXPERIMENTS]  # fmt: skip


def test_experiment_names_are_unique_across_lessons() -> None:
    names = [name for registry in REGISTRIES for name in registry]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_every_field_label_and_role_has_a_string() -> None:
    en = strings("en")
    missing = []
    every = {name: exp for registry in REGISTRIES for name, exp in registry.items()}
    for prefix, exp in every.items():
        variants = [exp.params()]
        for name, options in (("fn", CREATE_FNS), ("op", SHAPE_OPS if prefix == "shape" else INDEX_OPS),
                              ("scheme", init.DIST_SCHEMES if prefix == "dist" else ()),
                              ("layer", init.LAYERS), ("optimizer", init.OPTIMIZERS)):
            if any(s.name == name for s in exp.params.specs()):
                variants += [exp.params(**{name: o}) for o in options]
        for p in variants:
            roles = p.roles() if hasattr(p, "roles") else {s.name: s.name for s in p.specs()}
            missing += [f"{prefix}.{role}" for role in roles.values() if f"{prefix}.{role}" not in en]
    assert sorted(set(missing)) == []


def test_every_error_key_raised_in_core_has_a_message() -> None:
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "core").glob("*.py"))
    keys = set(re.findall(r'InvalidParams\(\s*[\w"]+,\s*"(\w+)"', source))
    keys |= set(re.findall(r'ExperimentError\("(\w+)"', source))
    assert {"out_of_range", "budget", "oom", "runtime", "timeout"} <= keys
    assert sorted(k for k in keys if f"errors.{k}" not in strings("en")) == []
    assert issubclass(InvalidParams, ValueError)


def test_dynamic_families_are_complete() -> None:
    en = strings("en")
    wanted = [f"nav.{lesson.slug}" for lesson in LESSONS] + [f"nav.{lesson.slug}_desc" for lesson in LESSONS]
    wanted += [f"index.caption_{op}" for op in INDEX_OPS]
    savers = (ROOT / "core" / "accumulation_memory.py").read_text(encoding="utf-8")
    reasons = set(re.findall(r'(?:return|else) "(\w+)"', savers))  # unavailable_reason's message keys
    assert "fp16_conv_slow" in reasons
    wanted += [f"savers.unavailable.{reason}" for reason in reasons]
    # The parts a result marks as needing a GPU: `() if cuda else ("events",)` and the like, and FactsResult's list.
    marked = re.findall(r'else \(((?:"\w+",? ?)+)\)', (ROOT / "core" / "speed.py").read_text(encoding="utf-8"))
    parts = {name for group in marked for name in re.findall(r"\w+", group)} | set(devices.FactsResult.gpu_only)
    assert {"events", "host_device", "crossover", "to_cuda"} <= parts
    wanted += [f"gpu.parts.{part}" for part in parts]
    assert [k for k in wanted if k not in en] == []


@pytest.mark.parametrize("slug", ["home", *[lesson.slug for lesson in LESSONS]])
def test_lesson_prose_has_the_same_sections_in_both_languages(slug: str) -> None:
    sections = {lang: _prose(lang, slug) for lang in LANGS}
    assert sections["en"].keys() == sections["zh"].keys()
    assert all(text.strip() for lang in LANGS for name, text in sections[lang].items() if name)
    assert (LESSON_DIR / "zh" / f"{slug}.md").exists()

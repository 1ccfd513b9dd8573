"""Catalogue text is data: a hostile dump cannot change what a generator loads, in any output format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _hostile import EVIL_CKPT_FILE, INJECTED_WORD, checkpoint, lora, write_dump
from diffagent.agents.default.params import assemble_call
from diffagent.bench.text import lora_tags
from diffagent.catalog import Store, import_dump, validate_call
from diffagent.errors import UserInputError
from diffagent.execute import FORMATS, to_payload
from diffagent.schema import LoRA
from diffagent.textsafety import (
    has_generator_syntax,
    is_safe_file_name,
    prompt_with_words,
    strip_control,
    strip_generator_syntax,
    text_problem,
)

PARAMS = {
    "negative_prompt": "<lora:easynegative:1>, embedding:bad, blurry",
    "sampler": "Euler a", "steps": 20, "cfg_scale": 7.0, "width": 512, "height": 512, "clip_skip": 1,
}  # fmt: skip


@pytest.fixture
def hostile(tmp_path: Path) -> Store:
    path = write_dump(tmp_path / "dump.jsonl", [checkpoint(), lora()])
    store = Store(tmp_path / "catalog.sqlite")
    report = import_dump(store, path)
    assert report.changed == 2
    assert report.sanitised["trigger words"] == 3 and report.sanitised["file names"] == 2
    assert "neutralised" in report.summary()
    return store


def _hostile_call(store: Store, prompt: str = "a portrait"):  # type: ignore[no-untyped-def]
    ckpt, lo = store.version(10), store.version(20)
    assert ckpt is not None and lo is not None
    loras = [
        LoRA(model_id=2, version_id=20, name=lo.model_name, weight=0.8, trigger_words=list(lo.trained_words))
    ]
    return assemble_call(ckpt, prompt, PARAMS, loras)


def test_import_neutralises_trigger_words_names_and_file_names(hostile: Store) -> None:
    lo = hostile.version(20)
    assert lo is not None
    assert lo.trained_words == ("sneaky style", "x:1> e:5")  # tags and openers gone, the words kept
    assert lo.model_name == "Sneaky LoRA"  # the set-title sequence is gone with its title
    assert hostile.version(10).trained_words == ("photo", "EvilEmbedding")  # type: ignore[union-attr]
    assert hostile.primary_files([10, 20]) == {}  # unsafe file names are not kept for payloads


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_output_format_loads_what_the_catalogue_injected(hostile: Store, fmt: str) -> None:
    api = _hostile_call(hostile)
    assert validate_call(hostile, api) == []
    body = json.dumps(to_payload(api, fmt, hostile.primary_files([10, 20])))
    for injected in ("injected", "etc/passwd", "evil", "../", "easynegative", "embedding:"):
        assert injected not in body, (fmt, injected)
    if fmt == "a1111":
        prompt = to_payload(api, fmt, hostile.primary_files([10, 20]))["prompt"]
        assert prompt.count("<lora:") == 1  # the call's one LoRA, nothing else


def test_trigger_word_injection_reaches_no_prompt_even_from_an_old_store(tmp_path: Path) -> None:
    """A LoRA object carrying a raw catalogue word (a store written before the rules) is cleaned too."""
    with Store(tmp_path / "c.sqlite") as store:
        store.conn.execute("BEGIN")
        store.upsert_model(checkpoint())
        store.conn.execute("COMMIT")
        ref = store.version(10)
        raw = LoRA(model_id=2, version_id=20, name="x", weight=1.0, trigger_words=[INJECTED_WORD, "style"])
        api = assemble_call(ref, "a cat <lora:user_tag:1e+20>", PARAMS, [raw])  # type: ignore[arg-type]
    assert "<" not in api.prompt and api.prompt == "a cat, style"
    assert api.loras[0].trigger_words == ["style"]


def test_a_prompt_of_only_tags_is_refused(hostile: Store) -> None:
    with pytest.raises(UserInputError, match="empty once its generator tags"):
        _hostile_call(hostile, "<lora:../../../etc/passwd:1>")


def test_validate_call_checks_the_final_prompt_words_and_file_names(hostile: Store) -> None:
    api = _hostile_call(hostile)
    bad = api.model_copy(
        update={
            "prompt": "a cat <lora:not_in_the_call:1>",
            "negative_prompt": "ugly \x1b[2J",
            "loras": [api.loras[0].model_copy(update={"trigger_words": [INJECTED_WORD]})],
        }
    )
    reasons = " | ".join(validate_call(hostile, bad))
    assert "prompt holds generator syntax" in reasons
    assert "negative prompt holds control characters" in reasons
    assert "trigger word holds generator syntax" in reasons
    # a store written before the rules: the file name a payload would write is refused by name
    hostile.conn.execute("UPDATE files SET name = ? WHERE version_id = 10", (EVIL_CKPT_FILE,))
    assert any("not a plain file name" in r for r in validate_call(hostile, api))


def test_old_store_is_cleaned_once_on_open(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with Store(path) as store:
        store.conn.execute("BEGIN")
        store.upsert_model(lora())
        store.conn.execute("COMMIT")
        # as an older diffagent stored it: raw words and file names, no text format mark
        store.conn.execute("UPDATE versions SET trained_words = ?", (json.dumps([INJECTED_WORD, "ok"]),))
        store.conn.execute("UPDATE files SET name = ?", (EVIL_CKPT_FILE,))
        store.set_state("text_format", None)
        before = store.revision
    with Store(path) as store:
        assert store.version(20).trained_words == ("ok",)  # type: ignore[union-attr]
        assert store.primary_files([20]) == {} and store.revision == before + 1
        hits = store.conn.execute("SELECT trained_words FROM model_fts WHERE rowid = 2").fetchone()[0]
        assert "injected" not in hits
    with Store(path) as store:
        assert store.revision == before + 1  # once


@pytest.mark.parametrize(
    ("text", "clean"),
    [
        ("<lora:injected:9>", ""),
        ("<LyCo: x :1>, ok", "ok"),
        ("<hypernet:h:1> a, <lora:b:1>, masterpiece", "a, masterpiece"),
        ("x:1><lora:../../evil:5.safetensors", "x:1> ../../evil:5.safetensors"),
        ("embedding:EasyNegative, bad hands", "EasyNegative, bad hands"),
        ("a cat \x1b[2J\x1b]0;title\x07 here\nnext\x00", "a cat here next"),
        ("<magifactory> art", "<magifactory> art"),
        ("lone \ud800 surrogate", "lone surrogate"),
    ],
)
def test_strip_generator_syntax(text: str, clean: str) -> None:
    assert strip_generator_syntax(text) == clean
    assert not has_generator_syntax(clean) and text_problem(clean) is None


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("model.safetensors", True), ("G.E.M..safetensors", True), ("../../etc/passwd", False),
        ("..", False), (".hidden", False), ("a\\b.ckpt", False), ("x:1><lora:e:5.safetensors", False),
        ("C:model.ckpt", False), ("tab\there", False), ("", False), (" padded ", False), ("x" * 256, False),
    ],
)  # fmt: skip
def test_is_safe_file_name(name: str, safe: bool) -> None:
    assert is_safe_file_name(name) is safe


def test_terminal_text_and_prompt_words() -> None:
    assert strip_control("\x9b31mred\x1b[0m \u202eevil") == "red evil"
    assert prompt_with_words("<lora:a:1>, cat", [INJECTED_WORD, "cat", "style"]) == "cat, style"


def test_user_lora_weight_parses_exponents() -> None:
    assert lora_tags("a <lora:x:1e+20> <lora:y:0.5>") == [("x", 1e20), ("y", 0.5)]

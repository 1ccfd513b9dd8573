"""The labelled intent set: real user prompts with the style they ask for, for ``intent_match``.

The prompts are DiffusionDB's (``../shared/data/diffusiondb-prompts/prompts-10k.json``, never copied into
the repository); the package ships only the labels, ``intent_labels.jsonl``: one line per prompt,
``{"index": position in the JSON list, "image": its DiffusionDB image id, "intent": style}``. The labels
come from the written rules of :mod:`diffagent.catalog.styles` (``docs/intent-rules.md``), kept where
exactly one style fires, and balanced: at most ``per_style`` prompts of each style, chosen by a hash of
the prompt so that the choice does not depend on file order. ``scripts/label_intents.py`` rewrites the
file from the prompts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from ..catalog.styles import STYLES, prompt_intent
from ..errors import UserInputError

__all__ = ["DIFFUSIONDB_PROMPTS", "INTENT_LABELS", "label_prompts", "load_intent_set", "read_prompts_file"]

INTENT_LABELS = Path(__file__).with_name("intent_labels.jsonl")
DIFFUSIONDB_PROMPTS = Path("../shared/data/diffusiondb-prompts/prompts-10k.json")
"""Where the shared prompts lie, relative to the project checkout."""


def read_prompts_file(path: Path) -> list[dict]:
    """DiffusionDB's JSON list of ``{"text", "image"}``; a missing or malformed file is a one-line error."""
    if not path.is_file():
        raise UserInputError(f"no such prompts file: {path} (the DiffusionDB prompts from ../shared)")
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserInputError(f"{path}: not a JSON list of prompts ({exc})") from None
    if not isinstance(items, list) or not all(
        isinstance(i, dict) and isinstance(i.get("text"), str) for i in items
    ):
        raise UserInputError(f"{path}: expected a JSON list of {{'text', 'image'}} objects")
    return items


def label_prompts(items: Sequence[dict], per_style: int = 200) -> list[dict]:
    """Labels by the written rules: prompts with exactly one style, at most ``per_style`` of each."""
    chosen: dict[str, list[tuple[str, dict]]] = {style: [] for style in STYLES}
    for index, item in enumerate(items):
        intent = prompt_intent(item["text"])
        if intent is None:
            continue
        key = hashlib.blake2b(item["text"].encode(), digest_size=8).hexdigest()
        chosen[intent].append((key, {"index": index, "image": item.get("image"), "intent": intent}))
    out = [label for style in STYLES for _, label in sorted(chosen[style], key=lambda kv: kv[0])[:per_style]]
    return sorted(out, key=lambda label: label["index"])


def load_intent_set(
    labels: Path = INTENT_LABELS, prompts: Path = DIFFUSIONDB_PROMPTS
) -> list[tuple[str, str]]:
    """(prompt, style) of each labelled line; a label whose prompt is not the one it was made for (another
    copy of the prompts) is an error rather than a silent mislabel."""
    items = read_prompts_file(prompts)
    out = []
    with labels.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            label = json.loads(line)
            index, intent = label.get("index"), label.get("intent")
            if not isinstance(index, int) or not 0 <= index < len(items) or intent not in STYLES:
                raise UserInputError(f"{labels}:{number}: expected an index into {prompts} and a style")
            if label.get("image") is not None and items[index].get("image") != label["image"]:
                raise UserInputError(
                    f"{labels}:{number}: prompt {index} of {prompts} is not image {label['image']}"
                )
            out.append((items[index]["text"], intent))
    return out

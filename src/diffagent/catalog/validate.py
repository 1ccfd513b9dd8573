"""Check an API call against the catalogue, and tell a hallucination from a mere error.

``validate_call`` returns every reason a call cannot be executed as written, so that an agent (or a user)
sees all of its mistakes at once. A subset of those reasons are *hallucinations* in Gorilla's sense, as
DESIGN.md defines them for DABench: the call names a checkpoint, LoRA, VAE or embedding that the catalogue
does not hold (unknown version, a version of another model, a model of the wrong type, a VAE file the
version does not list), pairs a LoRA or an embedding with a checkpoint of another base-model family,
or uses a sampler no generator knows. A real checkpoint that is merely the wrong choice for the prompt
is an error, not a hallucination; so are out-of-range parameters and a display name that does not match
the ids (the ids are what a generator downloads).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..schema import APICall, normalize_sampler
from ..textsafety import is_safe_file_name, text_problem
from .families import compatible
from .store import Store, VersionRef

__all__ = [
    "CFG_RANGE",
    "CLIP_SKIP_RANGE",
    "LORA_WEIGHT_RANGE",
    "SIZE_RANGE",
    "STEPS_RANGE",
    "Problem",
    "check_call",
    "hallucination_reasons",
    "is_hallucination",
    "validate_call",
]

# Inclusive ranges a generator accepts: AUTOMATIC1111's UI limits (steps 1-150, CFG 1-30, sides up to
# 2048 in multiples of 8, clip skip 1-12). LoRA weights beyond +-5 only ever produce noise.
STEPS_RANGE = (1, 150)
CFG_RANGE = (1.0, 30.0)
SIZE_RANGE = (64, 2048)
CLIP_SKIP_RANGE = (1, 12)
LORA_WEIGHT_RANGE = (-5.0, 5.0)


@dataclass(frozen=True)
class Problem:
    """One reason a call is invalid; ``hallucination`` marks those that name what does not exist."""

    reason: str
    hallucination: bool


def _same_name(name: str, ref: VersionRef) -> bool:
    def key(text: str | None) -> str:
        return re.sub(r"\s+", " ", text or "").strip().casefold()

    wanted = key(name)
    full = ref.full_name
    return bool(wanted) and wanted in {key(ref.model_name), key(ref.version_name), key(full)}


def _check_resource(
    store: Store, what: str, model_id: int, version_id: int, name: str, model_type: str
) -> tuple[VersionRef | None, list[Problem]]:
    """The catalogue version a checkpoint or LoRA names, and what is wrong with naming it so."""
    ref = store.version(version_id)
    if ref is None:
        return None, [Problem(f"{what} version {version_id} is not in the catalogue", True)]
    problems = []
    if ref.model_id != model_id:
        problems.append(
            Problem(f"{what} version {version_id} belongs to model {ref.model_id}, not {model_id}", True)
        )
    if ref.model_type != model_type:
        problems.append(
            Problem(f"{what} version {version_id} is a {ref.model_type or 'model of unknown type'}, "
                    f"not a {model_type}", True)
        )  # fmt: skip
    if not _same_name(name, ref):
        problems.append(
            Problem(f"{what} name {name!r} does not match version {version_id} ({ref.model_name!r})", False)
        )
    return ref, problems


def _out_of(value: float, bounds: tuple[float, float]) -> bool:
    return not (bounds[0] <= value <= bounds[1])


def check_call(store: Store, api: APICall) -> list[Problem]:
    """Every problem of ``api`` against the catalogue, hallucinations and plain errors alike."""
    ckpt = api.checkpoint
    ckpt_ref, problems = _check_resource(
        store, "checkpoint", ckpt.model_id, ckpt.version_id, ckpt.name, "Checkpoint"
    )
    # A version without a base model is named "Other", as Civitai itself does.
    if ckpt_ref is not None and ckpt.base_model.strip() != (ckpt_ref.base_model or "Other").strip():
        problems.append(
            Problem(f"checkpoint base model {ckpt.base_model!r} is not the catalogue's "
                    f"{ckpt_ref.base_model!r}", False)
        )  # fmt: skip
    seen: set[int] = set()
    for lora in api.loras:
        ref, found = _check_resource(store, "LoRA", lora.model_id, lora.version_id, lora.name, "LORA")
        problems += found
        if lora.version_id in seen:
            problems.append(Problem(f"LoRA version {lora.version_id} is applied twice", False))
        seen.add(lora.version_id)
        if ref is not None and ckpt_ref is not None and not compatible(ref.base_model, ckpt_ref.base_model):
            problems.append(
                Problem(f"LoRA {ref.model_name!r} is for {ref.base_model}, the checkpoint is "
                        f"{ckpt_ref.base_model}", True)
            )  # fmt: skip
        if not math.isfinite(lora.weight) or _out_of(lora.weight, LORA_WEIGHT_RANGE):
            problems.append(Problem(f"LoRA weight {lora.weight} is outside {LORA_WEIGHT_RANGE}", False))
    problems += _vae_problems(store, api) + _embedding_problems(store, api, ckpt_ref)
    problems += _text_problems(store, api)
    if normalize_sampler(api.sampler) is None:
        problems.append(Problem(f"sampler {api.sampler!r} is not known to any generator", True))
    if not api.prompt.strip():
        problems.append(Problem("the prompt is empty", False))
    if _out_of(api.steps, STEPS_RANGE):
        problems.append(Problem(f"steps {api.steps} is outside {STEPS_RANGE}", False))
    if not math.isfinite(api.cfg_scale) or _out_of(api.cfg_scale, CFG_RANGE):
        problems.append(Problem(f"CFG scale {api.cfg_scale} is outside {CFG_RANGE}", False))
    for side, value in (("width", api.width), ("height", api.height)):
        if _out_of(value, SIZE_RANGE) or value % 8:
            problems.append(Problem(f"{side} {value} is not a multiple of 8 within {SIZE_RANGE}", False))
    if _out_of(api.clip_skip, CLIP_SKIP_RANGE):
        problems.append(Problem(f"clip skip {api.clip_skip} is outside {CLIP_SKIP_RANGE}", False))
    if api.seed < -1:
        problems.append(Problem(f"seed {api.seed} is negative (use -1 for a random seed)", False))
    return problems


def _vae_problems(store: Store, api: APICall) -> list[Problem]:
    """A VAE names a file the catalogue lists as a VAE, of a version of the model named."""
    if api.vae is None:
        return []
    vae = api.vae
    files = store.files_of(vae.version_id)
    if not files:
        return [Problem(f"VAE version {vae.version_id} is not in the catalogue", True)]
    if files[0].version.model_id != vae.model_id:
        return [Problem(f"VAE version {vae.version_id} belongs to model {files[0].version.model_id}", True)]
    vae_model = files[0].version.model_type == "VAE"
    if not any(f.name == vae.name and (f.type == "VAE" or (vae_model and f.is_model)) for f in files):
        return [Problem(f"version {vae.version_id} lists no VAE file {vae.name[:60]!r}", True)]
    return []


def _embedding_problems(store: Store, api: APICall, ckpt_ref: VersionRef | None) -> list[Problem]:
    """Each embedding is a catalogue textual inversion for the checkpoint's family."""
    problems = []
    for item in api.embeddings or ():
        ref, found = _check_resource(
            store, "embedding", item.model_id, item.version_id, item.name, "TextualInversion"
        )
        problems += found
        if ref is not None and ckpt_ref is not None and not compatible(ref.base_model, ckpt_ref.base_model):
            problems.append(
                Problem(f"embedding {ref.model_name!r} is for {ref.base_model}, the checkpoint is "
                        f"{ckpt_ref.base_model}", True)
            )  # fmt: skip
    return problems


def _text_problems(store: Store, api: APICall) -> list[Problem]:
    """What in the call's text could steer a generator: tags or control characters in the prompts, the
    trigger words or the names, and catalogue file names a payload would write that are not plain names.

    Any ``<lora:...>``-style tag in a prompt is refused, not only one naming a LoRA the call lacks: the
    output formats add a tag for each of the call's LoRAs, so a tag in the prompt is a duplicate or an
    injection.
    """
    texts = [
        ("prompt", api.prompt),
        ("negative prompt", api.negative_prompt),
        ("checkpoint name", api.checkpoint.name),
    ]
    for lora in api.loras:
        texts.append((f"LoRA {lora.version_id} name", lora.name))
        texts += [(f"LoRA {lora.version_id} trigger word", word) for word in lora.trigger_words]
    for item in api.embeddings or ():
        texts.append((f"embedding {item.version_id} name", item.name))
        texts += [(f"embedding {item.version_id} trigger word", word) for word in item.trigger_words]
    problems = []
    if api.vae is not None and not is_safe_file_name(api.vae.name):
        problems.append(Problem(f"the VAE file name {api.vae.name[:60]!r} is not a plain file name", False))
    for what, text in texts:
        # line breaks in a prompt are harmless to a generator; other control characters are not
        problem = text_problem(re.sub(r"[\t\n\r]", " ", text))
        if problem is not None:
            problems.append(Problem(f"the {what} holds {problem}: {text[:60]!r}", False))
    named = [api.checkpoint.version_id, *(lora.version_id for lora in api.loras)]
    files = store.primary_files(named + [item.version_id for item in api.embeddings or ()])
    for version_id, name in files.items():
        if not is_safe_file_name(name):
            problems.append(
                Problem(f"version {version_id}'s file name {name[:60]!r} is not a plain file name", False)
            )
    return problems


def validate_call(store: Store, api: APICall) -> list[str]:
    """Every reason ``api`` is invalid against the catalogue; an empty list means it can be executed."""
    return [problem.reason for problem in check_call(store, api)]


def hallucination_reasons(store: Store, api: APICall) -> list[str]:
    """The reasons that make ``api`` a hallucination (DESIGN.md "Metrics"); empty when it has none."""
    return [problem.reason for problem in check_call(store, api) if problem.hallucination]


def is_hallucination(store: Store, api: APICall) -> bool:
    return bool(hallucination_reasons(store, api))

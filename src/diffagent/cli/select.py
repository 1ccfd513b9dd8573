"""``diffagent select``: an API call for one prompt, or for every line of a JSONL file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from .._io import output_path, write_jsonl
from ..agents import AGENT_NAMES, LLM_DECODINGS, Agent
from ..bench import SPLITS
from ..catalog import Store
from ..client import open_agent
from ..execute import FORMATS, to_payload
from ..schema import Answer
from ._common import console, fail, open_store, progress_bar, shown, stdout

__all__ = ["AGENT_HELP", "agent_spec", "build_agent", "read_prompts", "select_command"]

BATCH_CHUNK = 256
"""Prompts answered together by --batch: fast, and the progress bar still moves."""


AGENT_HELP = (
    f"one of: {', '.join(AGENT_NAMES)}; an LLM variant may be named in full as llm:MODEL or "
    f"llm:MODEL:DECODING ({'/'.join(LLM_DECODINGS)}), e.g. llm:rrhf:free"
)


def agent_spec(spec: str, model: str | None, unconstrained: bool) -> tuple[str, dict[str, Any]]:
    """The registry name and options of an ``--agent`` value.

    ``llm`` takes ``--model`` and ``--unconstrained``; ``llm:MODEL[:DECODING]`` names a variant by itself,
    so that one ``eval`` can score SFT and SFT+RRHF, constrained and free, each in its own row.
    """
    name, _, variant = spec.partition(":")
    if name not in AGENT_NAMES:
        fail(f"unknown agent {spec!r}; choose one of: {', '.join(AGENT_NAMES)}")
    if name != "llm":
        if variant:
            fail(f"only the llm agent takes a variant, not {spec!r}")
        return name, {}
    options: dict[str, Any] = {"unconstrained": unconstrained}
    if not variant:
        if model is not None:
            options["model"] = model
        return name, options
    variant_model, _, decoding = variant.partition(":")
    if not variant_model or (decoding and decoding not in LLM_DECODINGS):
        fail(f"{spec!r}: write llm:MODEL or llm:MODEL:DECODING, DECODING one of {', '.join(LLM_DECODINGS)}")
    options["model"] = variant_model
    if decoding:
        options.update(unconstrained=decoding == "free", decoding=decoding)
    return name, options


def build_agent(
    store: Store,
    spec: str,
    *,
    splits: tuple[str, ...],
    model: str | None = None,
    unconstrained: bool = False,
    installed: bool = False,
    base_models: tuple[str, ...] = (),
    allow_nsfw: bool = False,
    allow_poi: bool = False,
    workers: int = 1,
) -> Agent:
    """Agent ``spec`` (see :func:`agent_spec`, which reads ``model`` and ``unconstrained``) learning from
    DABench ``splits``, with a progress bar over first-use builds; safe unless ``allow_nsfw`` /
    ``allow_poi``; ``installed``: the library's files only; ``base_models`` restrict the default agent's
    checkpoints (Civitai strings or family names); ``workers``: the default agent's processes (for its
    first build and for batches)."""
    name, options = agent_spec(spec, model, unconstrained)
    if name == "default" and workers != 1:
        options["workers"] = workers
    if base_models:
        if name != "default":
            fail("--base-model restricts the default agent's checkpoints; drop it or use --agent default")
        options["base_models"] = base_models
    with progress_bar(f"preparing the {spec} agent (first use builds it)") as update:
        return open_agent(
            store,
            name,
            splits=splits,
            progress=update,
            installed=installed,
            allow_nsfw=allow_nsfw,
            allow_poi=allow_poi,
            **options,
        )


def _batch_item(line: bytes) -> tuple[Any, str]:
    """``(id, prompt)`` of one batch line; raises ValueError with the reason it is not one."""
    try:
        item = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError:  # Python refuses integers of more than 4,300 digits
        raise ValueError("a number is too long") from None
    if not isinstance(item, dict):
        raise ValueError("expected an object with 'id' and 'prompt'")
    item_id, prompt = item.get("id"), item.get("prompt")
    if isinstance(item_id, bool) or not isinstance(item_id, str | int):
        raise ValueError("'id' must be a string or an integer")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("'prompt' must be a non-empty string")
    for what, text in (("id", item_id), ("prompt", prompt)):
        if isinstance(text, str):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"'{what}' holds a lone surrogate (an escape like \\ud800)") from None
    return item_id, prompt


def read_prompts(path: Path) -> list[tuple[Any, str]]:
    """``(id, prompt)`` of each line of a batch file; a bad line is a one-line error naming it, before
    any answer is computed."""
    if not path.exists():
        fail(f"no such batch file: {path}")
    if not path.is_file():
        fail(f"the batch file {path} is not a regular file")
    items = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                items.append(_batch_item(line))
            except ValueError as exc:
                fail(f"{path}:{number}: {exc}")
    if not items:
        fail(f"{path}: no prompts")
    return items


def _print_answer(answer: Answer) -> None:
    from rich.table import Table  # rich only for a table: --json does without it

    api = answer.api
    out = stdout()
    table = Table(show_header=False, box=None, padding=(0, 1))
    table.add_column(style="bold")
    table.add_column()
    ckpt = api.checkpoint
    table.add_row(
        "checkpoint", f"{shown(ckpt.name)} [dim](model {ckpt.model_id}, version {ckpt.version_id})[/]"
    )
    table.add_row("base model", shown(ckpt.base_model))
    for lora in api.loras:
        words = f", triggers: {shown(', '.join(lora.trigger_words))}" if lora.trigger_words else ""
        table.add_row(
            "LoRA", f"{shown(lora.name)} x{lora.weight:g} [dim](version {lora.version_id}{words})[/]"
        )
    table.add_row(
        "sampler",
        f"{shown(api.sampler)}, {api.steps} steps, CFG {api.cfg_scale:g}, clip skip {api.clip_skip}",
    )
    if api.guidance is not None or api.scheduler is not None:
        extra = [f"guidance {api.guidance:g}" if api.guidance is not None else "", api.scheduler or ""]
        table.add_row("schedule", ", ".join(part for part in extra if part))
    table.add_row("size", f"{api.width}x{api.height}, seed {api.seed}")
    if api.hires is not None:
        hires = api.hires
        table.add_row(
            "hires fix",
            f"x{hires.scale:g} {shown(hires.upscaler)}, denoise {hires.denoising_strength:g}"
            + (f", {hires.steps} steps" if hires.steps else ""),
        )
    if api.vae is not None:
        table.add_row("VAE", f"{shown(api.vae.name)} [dim](published with version {api.vae.version_id})[/]")
    table.add_row("prompt", shown(api.prompt))
    table.add_row("negative", shown(api.negative_prompt) if api.negative_prompt else "[dim](none)[/]")
    if answer.low_confidence:
        table.add_row(
            "note", "[yellow]low confidence: no example prompt close to this one vouches for the pick[/]"
        )
    out.print(table)
    if len(answer.alternatives) > 1:
        alternatives = Table("#", "checkpoint", "base", "score", title="alternatives", title_justify="left")
        for rank, alt in enumerate(answer.alternatives, 1):
            alternatives.add_row(
                str(rank), shown(alt.checkpoint.name), shown(alt.checkpoint.base_model), f"{alt.score:.3g}"
            )
        out.print(alternatives)
    if answer.evidence:
        evidence = Table("similarity", "example prompt", "image", title="evidence", title_justify="left")
        for item in answer.evidence:
            text = item.prompt if len(item.prompt) <= 90 else item.prompt[:87] + "..."
            evidence.add_row(f"{item.similarity:.2f}", shown(text), shown(item.url or ""))
        out.print(evidence)


def select_command(
    prompt: str = typer.Argument(None, help="the text-to-image prompt", show_default=False),
    batch: Path = typer.Option(None, "--batch", help="JSONL of {'id', 'prompt'} lines to answer"),
    out: Path = typer.Option(
        None, "--out", help="where --batch writes {'id','api','alternatives','latency_ms'}"
    ),
    agent: str = typer.Option("default", "--agent", help=AGENT_HELP),
    k: int = typer.Option(5, "--k", min=1, help="how many ranked alternatives"),
    as_json: bool = typer.Option(False, "--json", help="print the answer as JSON"),
    model: str = typer.Option(None, "--model", help="trained model name or path (--agent llm)"),
    unconstrained: bool = typer.Option(
        False, "--unconstrained", help="let the LLM agent decode freely (--agent llm)"
    ),
    payload: str = typer.Option(
        None, "--format", help=f"print what a generator runs instead: {', '.join(FORMATS)}"
    ),
    installed: bool = typer.Option(
        False, "--installed", help="only checkpoints and LoRAs of your library (diffagent library scan)"
    ),
    base_model: list[str] = typer.Option(
        [],
        "--base-model",
        help="only checkpoints of this base model or family, e.g. 'SDXL 1.0', Pony (repeat)",
    ),
    allow_nsfw: bool = typer.Option(
        False, "--allow-nsfw", help="let the answer name explicit checkpoints and LoRAs (out by default)"
    ),
    allow_poi: bool = typer.Option(
        False, "--allow-poi", help="let the answer name real-person likeness models (out by default)"
    ),
    workers: int = typer.Option(
        0,
        "--workers",
        min=0,
        help="processes sharing the default agent's first build and a --batch (0: one per core, at most 4)",
    ),
) -> None:
    """One API call for PROMPT, or one per line of --batch IN.jsonl written to --out OUT.jsonl."""
    if (prompt is None) == (batch is None):
        fail("give either a PROMPT or --batch IN.jsonl")
    if batch is not None and out is None:
        fail("--batch needs --out OUT.jsonl")
    if batch is None and out is not None:
        fail("--out goes with --batch IN.jsonl")
    if prompt is not None and not prompt.strip():
        fail("the prompt is empty")
    if payload is not None and (payload not in FORMATS or batch is not None):
        fail(f"--format takes one of {', '.join(FORMATS)}, for a single PROMPT")
    items = read_prompts(batch) if batch is not None else []
    if out is not None:
        output_path(out, inputs=[batch])  # refused before any answer is computed
    with open_store() as store:
        selector = build_agent(
            store,
            agent,
            splits=SPLITS,
            model=model,
            unconstrained=unconstrained,
            installed=installed,
            base_models=tuple(base_model),
            allow_nsfw=allow_nsfw,
            allow_poi=allow_poi,
            workers=workers,
        )
        if batch is None:
            answer = selector.select(prompt, k)
            if payload is not None:
                # installed files by their own names, else the catalogue's
                from ..execute.generate import resolve_files

                files = resolve_files(store, answer.api)
                typer.echo(json.dumps(to_payload(answer.api, payload, files), indent=2, ensure_ascii=False))
            elif as_json:
                typer.echo(answer.model_dump_json())
            else:
                _print_answer(answer)
                if installed:
                    from .generate import download_hint

                    hint = download_hint(store, prompt, answer.api)
                    if hint:
                        console.print(hint, markup=False, highlight=False)
            return
        rows = []
        with progress_bar(f"answering with {agent}", total=len(items)) as update:
            for start in range(0, len(items), BATCH_CHUNK):
                chunk = items[start : start + BATCH_CHUNK]
                began = time.perf_counter()
                answers = selector.select_batch([text for _, text in chunk], k)
                latency = (time.perf_counter() - began) * 1000 / len(chunk)  # amortised over the chunk
                rows += [
                    {
                        "id": item_id,
                        "api": answer.api.model_dump(),
                        "alternatives": [alt.model_dump() for alt in answer.alternatives],
                        "low_confidence": answer.low_confidence,
                        "latency_ms": round(latency, 3),
                    }
                    for (item_id, _), answer in zip(chunk, answers, strict=True)
                ]
                update(start + len(chunk), len(items))
        selector.close()
    write_jsonl(out, rows, inputs=[batch])
    console.print(f"{shown(out)}: {len(rows)} answers", highlight=False)

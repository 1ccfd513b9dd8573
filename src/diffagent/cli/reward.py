"""``diffagent reward``: image scores of a folder of images, and the unified metric's reference statistics.

Both read ``DIR/prompts.jsonl``, one ``{"image": PATH, "prompt": TEXT}`` a line, PATH relative to DIR.
Each scorer's weights come from ``--clip/--imagereward/--hpsv2/--pickscore SRC`` (a local file or folder,
its tokenizer beside it, or a Hub repository; the published weights when not given).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import typer

from ..errors import UserInputError
from ..extras import require
from ._common import console, fail, progress_bar, shown, stdout

__all__ = ["SCORER_SOURCE_HELP", "app", "read_prompts"]

SCORER_SOURCE_HELP = {
    "clip": "CLIP weights: a local transformers folder or a Hub repository "
    "(default openai/clip-vit-large-patch14)",
    "imagereward": "ImageReward.pt, or a folder holding it and its BERT tokenizer "
    "(default THUDM/ImageReward)",
    "hpsv2": "HPS_v2_compressed.pt, or a folder holding it and its tokenizer or BPE file "
    "(default xswu/HPSv2)",
    "pickscore": "PickScore weights (held-out check), a local folder or a Hub repository "
    "(default yuvalkirstain/PickScore_v1)",
}
ALL_SCORERS = ("clip", "imagereward", "hpsv2", "pickscore")

app = typer.Typer(help="Score images with CLIP, ImageReward, HPS v2, PickScore and the unified metric.")


def read_prompts(folder: Path) -> tuple[list[str], list[Any], list[str]]:
    """(prompts, images, image paths as written) of ``folder/prompts.jsonl``; a bad line is one error."""
    require("reward", "diffagent reward")
    from PIL import Image

    index = folder / "prompts.jsonl"
    if not index.is_file():
        raise UserInputError(f'{index} is missing: write one {{"image", "prompt"}} line per image')
    prompts, images, names = [], [], []
    for number, line in enumerate(index.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            ok = (
                isinstance(row, dict)
                and isinstance(row.get("image"), str)
                and isinstance(row.get("prompt"), str)
            )
        except json.JSONDecodeError:
            ok = False
        if not ok:
            raise UserInputError(f'{index}:{number}: not an {{"image", "prompt"}} line')
        path = folder / row["image"]
        try:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        except (OSError, ValueError) as exc:
            raise UserInputError(f"{index}:{number}: cannot read image {row['image']} ({exc})") from None
        prompts.append(row["prompt"])
        names.append(row["image"])
    if not prompts:
        raise UserInputError(f"{index} lists no images")
    return prompts, images, names


def _scorer_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ALL_SCORERS]
    if unknown or not names:
        fail(f"unknown scorer {', '.join(unknown) or '(none)'}; choose from: {', '.join(ALL_SCORERS)}")
    return list(dict.fromkeys(names))


def _load(names: list[str], sources: dict[str, str | None], device: str | None) -> list[Any]:
    from huggingface_hub.utils import logging as hub_logging

    from ..reward import load_scorer

    hub_logging.set_verbosity_error()  # its download retries are not the user's one line
    options = {"device": device} if device else {}
    with console.status("loading " + ", ".join(names)):
        return [load_scorer(name, sources[name], **options) for name in names]


_DIR = typer.Argument(..., exists=True, file_okay=False, help="folder holding prompts.jsonl and its images")
_CLIP = typer.Option(None, "--clip", help=SCORER_SOURCE_HELP["clip"])
_IMAGEREWARD = typer.Option(None, "--imagereward", help=SCORER_SOURCE_HELP["imagereward"])
_HPS = typer.Option(None, "--hpsv2", help=SCORER_SOURCE_HELP["hpsv2"])
_PICKSCORE = typer.Option(None, "--pickscore", help=SCORER_SOURCE_HELP["pickscore"])
_DEVICE = typer.Option(None, "--device", help="torch device (default: cuda when there is one, else cpu)")


@app.command("score")
def score_command(
    folder: Path = _DIR,
    scorers: str = typer.Option(",".join(ALL_SCORERS), help="comma-separated scorers to run"),
    clip: str | None = _CLIP,
    imagereward: str | None = _IMAGEREWARD,
    hpsv2: str | None = _HPS,
    pickscore: str | None = _PICKSCORE,
    stats: Path | None = typer.Option(
        None,
        help="reference statistics file (default: the one `diffagent reward stats` wrote, else packaged)",
    ),
    device: str | None = _DEVICE,
    as_json: bool = typer.Option(False, "--json", help='print {"unified", "rows": [...]} as JSON'),
) -> None:
    """Each scorer's score of each image against its prompt, and the unified score where it can be had."""
    from ..reward import UNIFIED_SCORERS, ReferenceStats, unified_score

    names = _scorer_names(scorers)
    prompts, images, paths = read_prompts(folder)
    sources = {"clip": clip, "imagereward": imagereward, "hpsv2": hpsv2, "pickscore": pickscore}
    reference = ReferenceStats.load(stats)
    note = None
    if not set(UNIFIED_SCORERS) <= set(names):
        note = f"unified score needs {', '.join(UNIFIED_SCORERS)}"
    else:
        try:
            reference.require()
        except UserInputError as exc:
            note = str(exc)
    loaded = _load(names, sources, device)
    with progress_bar("scoring", len(loaded)) as update:
        raw: dict[str, list[float]] = {}
        for done, scorer in enumerate(loaded, 1):
            raw[scorer.name] = scorer.score(prompts, images)
            update(done, len(loaded))
    unified = None
    if note is None:
        unified = unified_score({name: raw[name] for name in reference.scorers}, reference)
    rows = [
        {"image": path, "prompt": prompt, **{name: raw[name][i] for name in names},
         "unified": None if unified is None else unified[i]}
        for i, (path, prompt) in enumerate(zip(paths, prompts, strict=True))
    ]  # fmt: skip
    version = reference.version if unified is not None else None
    if as_json:
        print(json.dumps({"unified": version, "note": note, "rows": rows}, ensure_ascii=False))
        return
    out = stdout()
    header = ["image", *names, "unified"]
    out.print("| " + " | ".join(header) + " |", highlight=False)
    out.print("|" + "---|" * len(header), highlight=False)
    for row in rows:
        cells = [shown(row["image"])] + [
            "-" if row[name] is None else f"{row[name]:.4f}" for name in [*names, "unified"]
        ]
        out.print("| " + " | ".join(cells) + " |", highlight=False, soft_wrap=True)
    console.print(
        f"unified: {version}" if version else f"unified: not computed ({note})",
        highlight=False,
        soft_wrap=True,
    )


@app.command("stats")
def stats_command(
    folder: Path = _DIR,
    clip: str | None = _CLIP,
    imagereward: str | None = _IMAGEREWARD,
    hpsv2: str | None = _HPS,
    version: str | None = typer.Option(
        None, help="name of the new statistics (default: unified-v1+ a digest of the values)"
    ),
    reference: str | None = typer.Option(None, help="what the reference set is (default: the folder's name)"),
    out: Path | None = typer.Option(
        None,
        help="write here (default: DIFFAGENT_HOME/reward/reference_stats.json, the statistics in effect)",
    ),
    device: str | None = _DEVICE,
) -> None:
    """Measure the unified metric's reference statistics over DIR and write them as a versioned file."""
    from ..reward import UNIFIED_SCORERS, UNIFIED_VERSION, compute_reference_stats
    from ..reward.unified import user_stats_path

    prompts, images, _ = read_prompts(folder)
    if len(prompts) < 2:
        fail("a reference set needs at least two images")
    sources = {"clip": clip, "imagereward": imagereward, "hpsv2": hpsv2}
    scorers = _load(list(UNIFIED_SCORERS), sources, device)
    with progress_bar("reference statistics") as update:
        measured = compute_reference_stats(
            scorers, prompts, images, version="pending", reference=reference or folder.resolve().name,
            progress=update,
        )  # fmt: skip
    if version is None:
        values = json.dumps({n: [s.mean, s.std, s.n] for n, s in measured.stats.items() if s}, sort_keys=True)
        version = f"{UNIFIED_VERSION}+{hashlib.sha256(values.encode()).hexdigest()[:8]}"
    import dataclasses

    measured = dataclasses.replace(measured, version=version)
    path = out or user_stats_path()
    measured.save(path)
    parts = ", ".join(f"{n} {s.mean:.4f} ± {s.std:.4f}" for n, s in measured.stats.items() if s)
    console.print(
        f"wrote {shown(path)}: {version} over {len(prompts)} images ({parts})",
        highlight=False,
        soft_wrap=True,
    )

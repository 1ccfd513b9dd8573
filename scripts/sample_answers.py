"""Print the default agent's answers to real and typical prompts, one compact block each, for reading.

    python scripts/sample_answers.py [--n 30] [--seed 7] [--allow-nsfw] [--allow-poi] [--picks FILE]
    python scripts/sample_answers.py --compare OLD.jsonl NEW.jsonl   # the prompts whose checkpoint changed

The prompts: ``--n`` DiffusionDB prompts drawn with ``--seed`` from ``../shared`` and the typical intents
below (a photo portrait, anime, a landscape painting, a product shot, a logo, pixel art, architecture, a
named art style, Chinese / Japanese / French, "a cat"). The agent learns from the train split (the index
``diffagent eval`` caches; ``diffagent select`` learns from every split). ``docs/benchmarks.md``
summarises one reading of this output.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from diffagent.catalog import Store
from diffagent.client import open_agent
from diffagent.config import store_path

TYPICAL = [
    "professional photo portrait of an elderly fisherman, 85mm, soft light",
    "anime girl with silver hair in a school uniform, cherry blossoms",
    "landscape painting of rolling hills at sunset, oil on canvas",
    "product shot of a perfume bottle on white marble, studio lighting",
    "minimalist logo of a fox for a coffee shop",
    "pixel art of a knight in a dungeon",
    "modern concrete house in a forest, architectural photography",
    "a harbour in the style of Van Gogh",
    "ukiyo-e print of a great wave and mount fuji",
    "watercolor illustration of a hedgehog in autumn leaves",
    "a cute 3d render of a robot, pixar style",
    "a skyscraper at night, cinematic",
    "一只可爱的猫坐在窗台上",
    "富士山と桜、夕焼けの風景",
    "un chat noir sur un toit de Paris la nuit",
    "a cat",
    "a red sports car film still",
    "cyberpunk city street in the rain, neon lights",
    "a bowl of ramen, food photography",
    "portrait of a knight, full body, fantasy art",
]
DIFFUSIONDB = Path(__file__).resolve().parents[2] / "shared/data/diffusiondb-prompts/prompts-10k.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--allow-nsfw", action="store_true")
    parser.add_argument("--allow-poi", action="store_true")
    parser.add_argument("--picks", type=Path, help="also write each prompt's checkpoint here (JSONL)")
    parser.add_argument(
        "--compare",
        type=Path,
        nargs=2,
        metavar=("OLD", "NEW"),
        help="the prompts two --picks files differ on",
    )
    args = parser.parse_args()
    if args.compare:
        _compare(*args.compare)
        return
    real = [item["text"] for item in json.loads(DIFFUSIONDB.read_text())] if DIFFUSIONDB.is_file() else []
    prompts = random.Random(args.seed).sample(real, min(args.n, len(real))) + TYPICAL
    with Store(store_path()) as store:
        agent = open_agent(store, splits=("train",), allow_nsfw=args.allow_nsfw, allow_poi=args.allow_poi)
        answers = agent.select_batch(prompts)
    if args.picks:
        with args.picks.open("w") as out:
            for prompt, answer in zip(prompts, answers, strict=True):
                ckpt = answer.api.checkpoint
                out.write(json.dumps({"prompt": prompt, "model_id": ckpt.model_id, "name": ckpt.name}) + "\n")
    for number, (prompt, answer) in enumerate(zip(prompts, answers, strict=True), 1):
        api = answer.api
        loras = ", ".join(f"{lo.name} x{lo.weight:g} {lo.trigger_words}" for lo in api.loras) or "-"
        hires = f" hires x{api.hires.scale:g} {api.hires.upscaler}" if api.hires else ""
        hires += f", VAE {api.vae.name}" if api.vae else ""
        flag = " LOW-CONFIDENCE" if answer.low_confidence else ""
        print(f"#{number} {prompt[:150]!r}{flag}")
        print(f"   {api.checkpoint.name} ({api.checkpoint.base_model}); LoRAs: {loras}")
        print(f"   {api.sampler}, {api.steps} steps, CFG {api.cfg_scale:g}, {api.width}x{api.height}{hires}")
        print(f"   sent: {api.prompt[:200]!r}")
        print(f"   negative: {api.negative_prompt[:160]!r}")


def _compare(old: Path, new: Path) -> None:
    """Print each prompt whose checkpoint differs between two ``--picks`` files, then the count."""
    before, after = ([json.loads(line) for line in path.read_text().splitlines()] for path in (old, new))
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a["model_id"] != b["model_id"]]
    for a, b in changed:
        print(f"{a['prompt'][:70]!r}: {a['name']} -> {b['name']}")
    print(f"{len(changed)} of {len(before)} prompts changed checkpoint")


if __name__ == "__main__":
    main()

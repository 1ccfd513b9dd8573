"""Throughput of the image reward job (render, then score with the unified metric and PickScore).

By default it builds the tiny random models of the tests (a tiny SD pipeline per checkpoint, tiny CLIP,
ImageReward, HPS v2, PickScore) and times N instructions x K candidates over C checkpoints, in this process
and, with ``--ray``, on a local Ray with ``--ray-cpus`` CPUs and as many actors. With ``--checkpoints``
and the scorer options it times real weights instead (a GPU machine with the published weights).

    python scripts/bench_reward.py --instructions 8 --candidates 4 --ray

It prints one markdown row per path: images, seconds, seconds per image, images per second.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the tiny model builders


def _tiny(root: Path, checkpoints: int) -> tuple[Path, dict[str, Path], Path]:
    from _tiny_models import tiny_sd_pipeline, write_scorers
    from diffagent.reward import UNIFIED_SCORERS, compute_reference_stats, load_scorer
    from diffagent.reward.clip import load_clip_tokenizer

    scorers = write_scorers(root / "scorers")
    tokenizer = load_clip_tokenizer(scorers["clip"])
    for seed in range(checkpoints):
        tiny_sd_pipeline(tokenizer, seed).save_pretrained(root / "checkpoints" / str(1000 + seed))
    import numpy as np

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8) for _ in range(8)]
    prompts = ["a photo of a cat", "a red castle", "dog on the hill", "the cat at night"] * 2
    loaded = [load_scorer(name, str(scorers[name]), device="cpu") for name in UNIFIED_SCORERS]
    stats = compute_reference_stats(loaded, prompts, images, version="unified-v1+bench", reference="random")
    stats.save(root / "stats.json")
    return root / "checkpoints", scorers, root / "stats.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instructions", type=int, default=8)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--checkpoints-used", type=int, default=2, help="distinct checkpoints (tiny run)")
    parser.add_argument("--side", type=int, default=32, help="longer side of the images in pixels")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per image")
    parser.add_argument("--shard-size", type=int, default=8)
    parser.add_argument("--ray", action="store_true", help="also time the job on a local Ray")
    parser.add_argument("--ray-cpus", type=int, default=2)
    parser.add_argument("--checkpoints", help="real run: folder of diffusers pipelines, DIR/VERSION_ID/")
    parser.add_argument("--clip")
    parser.add_argument("--imagereward")
    parser.add_argument("--hpsv2")
    parser.add_argument("--pickscore")
    parser.add_argument("--stats", help="real run: reference statistics file")
    parser.add_argument("--threads", type=int, default=1, help="torch threads here (Ray workers use 1 each)")
    parser.add_argument("--json-out")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)

    from diffagent.reward.candidates import RenderedReward, ScoringSpec, local_runner
    from diffagent.schema import APICall, Checkpoint

    work = Path(tempfile.mkdtemp(prefix="bench-reward-"))
    if args.checkpoints:
        root, stats = Path(args.checkpoints), args.stats
        sources = {n: getattr(args, n) for n in ("clip", "imagereward", "hpsv2", "pickscore")}
        versions = sorted(int(p.name) for p in root.iterdir() if p.name.isdigit())
    else:
        root, scorers, stats_path = _tiny(work, args.checkpoints_used)
        sources, stats = {n: str(p) for n, p in scorers.items()}, str(stats_path)
        versions = [1000 + i for i in range(args.checkpoints_used)]
    spec = ScoringSpec(
        checkpoints=str(root), stats=stats, max_side=args.side, max_steps=args.steps, **sources
    )
    items = []
    for i in range(args.instructions):
        calls = []
        for j in range(args.candidates):
            version = versions[(i + j) % len(versions)]
            checkpoint = Checkpoint(
                model_id=version, version_id=version, name=f"m{version}", base_model="SD 1.5"
            )
            calls.append(APICall(checkpoint=checkpoint, prompt=f"a cat, take {j}", sampler="Euler a",
                                 steps=args.steps, cfg_scale=5.0 + j, width=512, height=512))  # fmt: skip
        items.append((f"a photo of a cat number {i}", calls))
    images = args.instructions * args.candidates
    rows = []

    scoring = spec.build()  # weights loaded once, outside the timing
    start = time.perf_counter()
    RenderedReward(local_runner(scoring, work / "local"), "bench", shard_size=args.shard_size).score_sets(
        items
    )
    wall = time.perf_counter() - start
    rows.append(
        {
            "path": f"local, 1 process, {args.threads} torch thread",
            "images": images,
            "wall_s": wall,
            "loads": scoring.renderer.loads,
        }
    )
    if args.ray:
        import ray

        from diffagent.reward.ray_job import ray_runner

        start = time.perf_counter()
        ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
        started = time.perf_counter() - start
        for name in ("ray, first job", "ray, warm cluster"):
            runner = ray_runner(spec, work / name.replace(" ", "-").replace(",", ""), actors=args.ray_cpus)
            start = time.perf_counter()
            RenderedReward(runner, "bench", shard_size=args.shard_size).score_sets(items)
            wall = time.perf_counter() - start
            rows.append({"path": f"{name} ({args.ray_cpus} CPUs, {args.ray_cpus} actors)", "images": images,
                         "wall_s": wall, "ray_init_s": started})  # fmt: skip
        ray.shutdown()
    print(
        f"| path | images | wall s | s / image | images / s |  ({platform.processor() or platform.machine()})"
    )
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        per_image = row["wall_s"] / row["images"]
        print(f"| {row['path']} | {row['images']} | {row['wall_s']:.2f} | {per_image:.3f} "
              f"| {1 / per_image:.2f} |")  # fmt: skip
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

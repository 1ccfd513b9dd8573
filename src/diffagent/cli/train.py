"""``diffagent train``: the default agent's ranker and the two stages of SFTA for the LLM agent."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ..catalog import Store
from ..extras import require
from ..llm.config import PromptConfig
from ..train.config import RRHFConfig, SFTConfig
from ._common import console, fail, open_filled_store, open_store, progress_bar, shown
from .reward import SCORER_SOURCE_HELP

if TYPE_CHECKING:
    from ..bench.pairs import Pair
    from ..reward.candidates import RenderedReward, ScoringSpec
    from ..schema import APICall
    from ..train.loop import TrainResult


def _option(config: type, name: str, *flags: str, **checks: Any) -> Any:
    """A command-line option whose default and help come from field ``name`` of a config dataclass, so
    that both exist once (TRL's way); ``checks`` are typer's own (``min=1``)."""
    field = next(f for f in fields(config) if f.name == name)
    return typer.Option(field.default, *flags, help=field.metadata["help"], **checks)


app = typer.Typer(help="Train the default agent's ranker, and the LLM agent by SFT then RRHF.")


# -- the default agent: index and ranker ---------------------------------------------------------------


@app.command("ranker")
def ranker_command(
    split: list[str] = typer.Option(
        ["train", "val", "test"],
        "--split",
        help="DABench splits to learn from, repeatable (select uses all three, eval uses train)",
    ),
) -> None:
    """(Re)build the default agent's index and train its ranker; select and eval also do it on first use."""
    from ..agents.default.agent import train_default
    from ..bench import SPLITS, PairFiles, ensure_bench

    for name in split:
        if name not in SPLITS:
            fail(f"unknown split {name!r}; choose from: {', '.join(SPLITS)}")
    with open_filled_store() as store:
        with progress_bar("building DABench") as update:
            folder = ensure_bench(store, progress=update)
        examples = PairFiles(folder, split)  # the same key as `select` over the same splits
        with progress_bar("index and ranker") as update:
            path, report = train_default(store, examples, progress=update)
    console.print(
        f"saved {shown(path)}: {report['examples']:.0f} examples, "
        f"ranker on {report['train_queries']:.0f} of them, "
        f"held-out model@1 {report.get('held_model@1', float('nan')):.3f} "
        f"model@5 {report.get('held_model@5', float('nan')):.3f}, built in {report['build_s']:.0f} s",
        highlight=False,
        soft_wrap=True,
    )


# -- the LLM agent: SFT then RRHF ----------------------------------------------------------------------

_PAIRS_HELP = "train on this pairs file instead of DABench's train split (built first if missing)"
_RESUME_HELP = "continue from DIFFAGENT_HOME/models/OUT/last-checkpoint (also towards a larger --max-steps)"


def _train_pairs(store: Store, pairs: Path | None) -> tuple[list[Pair], str]:
    from ..bench import ensure_bench, load_pairs

    store.require_models()
    if pairs is None:
        with progress_bar("building DABench") as update:
            pairs = ensure_bench(store, progress=update) / "train.jsonl"
    return load_pairs(pairs), str(pairs)


def _candidates(
    store: Store, pool: list[Pair], chosen: list[Pair], prompt: PromptConfig
) -> list[list[APICall]]:
    from ..agents import load_agent
    from ..train.data import fold_candidates

    with progress_bar(f"candidates from the {prompt.retriever} retriever") as update:
        return fold_candidates(
            pool, chosen, lambda examples: load_agent(prompt.retriever, store, examples),
            prompt.n_candidates, prompt.folds, update,
        )  # fmt: skip


def _report(out_dir: Path, result: TrainResult, pairs: int) -> None:
    summary = result.summary()
    if len(result.losses) >= 10:
        loss = f"loss {summary['loss_first5']} -> {summary['loss_last5']} (mean of first / last 5 steps)"
    elif result.losses:  # five-step means would overlap and hide the change
        loss = f"loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f} (first / last step)"
    else:
        loss = "no step run"
    console.print(
        f"saved {shown(out_dir)}: {summary['steps']} steps on {pairs} instructions "
        f"in {summary['wall_s']:.0f} s, " + loss,
        highlight=False,
        soft_wrap=True,
    )


@app.command("sft")
def sft_command(
    base_model: str = _option(SFTConfig, "base_model", "--base-model"),
    max_steps: int | None = _option(SFTConfig, "max_steps", "--max-steps", min=1),
    limit: int | None = _option(SFTConfig, "limit", min=1),
    out: str = _option(SFTConfig, "out"),
    method: str = _option(SFTConfig, "method"),
    epochs: int = _option(SFTConfig, "epochs", min=1),
    batch_size: int = _option(SFTConfig, "batch_size", min=1),
    micro_batch: int = _option(SFTConfig, "micro_batch", "--micro-batch"),
    learning_rate: float | None = _option(SFTConfig, "learning_rate", min=0.0),
    seed: int = _option(SFTConfig, "seed"),
    retriever: str = _option(PromptConfig, "retriever"),
    pairs: Path | None = typer.Option(None, help=_PAIRS_HELP),
    resume: bool = typer.Option(False, help=_RESUME_HELP),
) -> None:
    """Stage 1: fine-tune the LLM agent on DABench's train split (PEFT LoRA by default)."""
    require("llm", "diffagent train sft")
    from ..llm.models import model_dir, resolve_base_model
    from ..train.sft import train_sft

    model_dir(out)  # a bad name fails before any work
    config = SFTConfig(
        out=out, base_model=base_model, method=method, max_steps=max_steps, epochs=epochs, limit=limit,
        batch_size=batch_size, micro_batch=micro_batch, learning_rate=learning_rate, seed=seed,
    )  # fmt: skip
    prompt = PromptConfig(retriever=retriever)
    with console.status(f"preparing {base_model} (a GGUF is converted once)"):
        resolve_base_model(base_model)
    with open_store() as store:
        pool, source = _train_pairs(store, pairs)
        from ..train.data import sample_pairs

        chosen = sample_pairs(pool, limit, seed)
        candidates = _candidates(store, pool, chosen, prompt)
        with progress_bar("SFT steps") as update:
            out_dir, result = train_sft(
                config, prompt, store, chosen, candidates, data_source=source, resume=resume, progress=update
            )
    _report(out_dir, result, len(chosen))


def _image_reward(
    spec: ScoringSpec, config: RRHFConfig, shard_dir: Path, ray_address: str | None, actors: int, gpus: float
) -> RenderedReward:
    """The unified reward on rendered candidates, run here or on Ray; its statistics are checked first."""
    require("reward", "--reward unified")
    require("diffusers", "--reward unified")
    from ..reward.candidates import RenderedReward, local_runner
    from ..reward.unified import ReferenceStats

    stats = ReferenceStats.load(spec.stats)
    stats.require()  # refuse before any sampling when the metric has no statistics
    if ray_address is not None:
        from ..reward.ray_job import ray_runner

        runner = ray_runner(spec, shard_dir, address=ray_address, actors=actors, gpus_per_actor=gpus)
    else:
        runner = local_runner(spec.build, shard_dir)
    return RenderedReward(runner, stats.version, seed=config.seed, shard_size=config.shard_size)


@app.command("rrhf")
def rrhf_command(
    source: str = _option(RRHFConfig, "source", "--from"),
    max_steps: int | None = _option(RRHFConfig, "max_steps", "--max-steps", min=1),
    limit: int | None = _option(RRHFConfig, "limit", min=1),
    out: str = _option(RRHFConfig, "out"),
    samples: int = _option(RRHFConfig, "samples", min=0),
    alternatives: int = _option(RRHFConfig, "alternatives", min=0),
    temperature: float = _option(RRHFConfig, "temperature", min=0.01),
    epochs: int = _option(RRHFConfig, "epochs", min=1),
    batch_size: int = _option(RRHFConfig, "batch_size", min=1),
    micro_batch: int = _option(RRHFConfig, "micro_batch", "--micro-batch"),
    learning_rate: float | None = _option(RRHFConfig, "learning_rate", min=0.0),
    seed: int = _option(RRHFConfig, "seed"),
    candidates: Path | None = typer.Option(
        None, help="train on this {query, responses, scores} JSONL instead of building one"
    ),
    score_only: bool = typer.Option(False, help="write OUT/rrhf-candidates.jsonl, then stop before training"),
    pairs: Path | None = typer.Option(None, help=_PAIRS_HELP),
    resume: bool = typer.Option(False, help=_RESUME_HELP + "; reuses the candidates file"),
    reward_name: str = _option(RRHFConfig, "reward", "--reward"),
    checkpoints: Path | None = typer.Option(
        None, help="--reward unified: folder of diffusers pipelines, one per catalogue version id (DIR/ID/)"
    ),
    clip: str | None = typer.Option(None, "--clip", help=SCORER_SOURCE_HELP["clip"]),
    imagereward: str | None = typer.Option(None, "--imagereward", help=SCORER_SOURCE_HELP["imagereward"]),
    hpsv2: str | None = typer.Option(None, "--hpsv2", help=SCORER_SOURCE_HELP["hpsv2"]),
    pickscore: str | None = typer.Option(
        None, "--pickscore", help=SCORER_SOURCE_HELP["pickscore"] + "; scored beside the reward, never in it"
    ),
    stats: Path | None = typer.Option(
        None, help="reference statistics of the unified metric (default: in effect)"
    ),
    render_steps: int | None = _option(RRHFConfig, "render_steps", "--render-steps", min=1),
    render_side: int | None = _option(RRHFConfig, "render_side", "--render-side", min=8),
    shard_size: int = _option(RRHFConfig, "shard_size", "--shard-size", min=1),
    ray_address: str | None = typer.Option(
        None, help="run the reward job on Ray: `local` starts one here, else a cluster address (`auto`)"
    ),
    ray_actors: int = typer.Option(1, min=1, help="Ray actors (one pipeline each)"),
    ray_gpus: float = typer.Option(0.0, min=0.0, help="GPUs per Ray actor"),
    device: str | None = typer.Option(None, help="torch device of the reward job (default: cuda if any)"),
) -> None:
    """Stage 2: score candidate calls with the reward into a file, then train by RRHF on it."""
    require("llm", "diffagent train rrhf")
    import torch

    from .._io import write_jsonl
    from ..llm.codec import CatalogNames, LLMCodec
    from ..llm.models import load_model, model_dir, read_metadata, resolve_base_model
    from ..reward import ProxyReward
    from ..train.data import sample_pairs
    from ..train.rrhf import held_out_agreement, read_rrhf_rows, rrhf_rows, train_rrhf

    model_dir(out)  # a bad name fails before any work
    config = RRHFConfig(
        out=out, source=source, max_steps=max_steps, epochs=epochs, limit=limit, batch_size=batch_size,
        micro_batch=micro_batch, learning_rate=learning_rate, seed=seed, samples=samples,
        alternatives=alternatives, temperature=temperature, reward=reward_name, render_steps=render_steps,
        render_side=render_side, shard_size=shard_size,
    )  # fmt: skip
    image_reward = None
    if config.reward == "unified" and candidates is None:
        if checkpoints is None:
            fail(
                "--reward unified renders each candidate: "
                "pass --checkpoints DIR (diffusers pipelines, DIR/ID/)"
            )
        from ..reward.candidates import ScoringSpec

        spec = ScoringSpec(
            checkpoints=str(checkpoints), clip=clip, imagereward=imagereward, hpsv2=hpsv2,
            pickscore=pickscore, stats=None if stats is None else str(stats), max_steps=render_steps,
            max_side=render_side, device=device,
        )  # fmt: skip
        image_reward = _image_reward(
            spec, config, model_dir(out) / "reward-shards", ray_address, ray_actors, ray_gpus
        )
    if not read_metadata(resolve_base_model(source)).get("stage"):
        fail(f"{source!r} is not a model trained by `diffagent train sft`: train one first")
    with console.status(f"loading {source}"):
        model, tokenizer, meta = load_model(source, trainable=True)
    prompt = PromptConfig.from_dict(meta.get("prompt"))
    with open_store() as store:
        codec = LLMCodec(tokenizer, CatalogNames.from_store(store), prompt)
        path = candidates or model_dir(out) / "rrhf-candidates.jsonl"
        if candidates is None and not (resume and path.is_file()):
            pool, _ = _train_pairs(store, pairs)
            chosen = sample_pairs(pool, limit, seed)
            cands = _candidates(store, pool, chosen, prompt)
            reward = image_reward or ProxyReward(store)
            torch.manual_seed(seed)
            with progress_bar(f"sampling, scoring with {reward.name}") as update:
                rows = write_jsonl(path, rrhf_rows(model, codec, chosen, cands, reward, config, update))
            console.print(f"wrote {rows} rows to {shown(path)}", highlight=False, soft_wrap=True)
            for name, share in held_out_agreement(read_rrhf_rows(path)).items():
                console.print(
                    f"held-out {name} picks the reward's best response in {share:.0%} of instructions",
                    highlight=False,
                )
        if score_only:
            return
        rows_read = read_rrhf_rows(path)
        if candidates is not None and limit is not None:
            rows_read = rows_read[:limit]
        with progress_bar("RRHF steps") as update:
            out_dir, result = train_rrhf(
                config, model, tokenizer, meta, codec, rows_read, data_source=str(path), resume=resume,
                progress=update,
            )  # fmt: skip
    _report(out_dir, result, len(rows_read))

"""``diffagent eval``: DABench metrics of one or more agents on a pairs file."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import typer

from ..bench.intents import DIFFUSIONDB_PROMPTS, INTENT_LABELS
from ..errors import UserInputError
from ._common import fail, open_filled_store, progress_bar
from .select import AGENT_HELP, agent_spec, build_agent

__all__ = ["BASELINES", "default_agents", "eval_command"]

BASELINES = ("random", "popular", "keyword", "tfidf")


def default_agents() -> list[str]:
    """The four baselines, and the default agent once its module is installed."""
    has_default = importlib.util.find_spec("diffagent.agents.default.agent") is not None
    return [*BASELINES, *(["default"] if has_default else [])]


def eval_command(
    pairs: Path = typer.Option(
        None,
        "--pairs",
        help="DABench-format pairs file (default: the bench's test split)",
        show_default=False,
    ),
    agent: list[str] = typer.Option(
        [],
        "--agent",
        help=f"agent to score, repeatable (default: the baselines and 'default'); {AGENT_HELP}; "
        "each row is named as its --agent is written",
        show_default=False,
    ),
    as_json: bool = typer.Option(False, "--json", help='print {"rows": [...]} instead of a markdown table'),
    limit: int = typer.Option(
        None, "--limit", min=1, help="score at most N pairs (and N labelled prompts), spread over the files"
    ),
    k: int = typer.Option(5, "--k", min=1, help="alternatives per answer (model@5 needs 5)"),
    latency_prompts: int = typer.Option(200, min=1, help="prompts timed one at a time for p50/p95"),
    model: str = typer.Option(None, "--model", help="trained model name or path (--agent llm)"),
    unconstrained: bool = typer.Option(
        False, "--unconstrained", help="let the LLM agent decode freely (--agent llm)"
    ),
    intents: Path = typer.Option(
        INTENT_LABELS, "--intents", help="labelled intent set (style labels of DiffusionDB prompts)"
    ),
    intent_prompts: Path = typer.Option(
        DIFFUSIONDB_PROMPTS, "--intent-prompts", help="the DiffusionDB prompts the labels index into"
    ),
    no_intents: bool = typer.Option(False, "--no-intents", help="skip the labelled intent set"),
    allow_nsfw: bool = typer.Option(False, "--allow-nsfw", help="let agents name explicit models"),
    allow_poi: bool = typer.Option(False, "--allow-poi", help="let agents name real-person models"),
    workers: int = typer.Option(
        1, "--workers", min=0, help="processes sharing each batch (default agent; 0: one per core)"
    ),
) -> None:
    """Score agents on DABench pairs (model@1/@5, base@1, hallucination, parameters, reward, speed, and
    what users see: unsafe, polluted negatives, settings outside the family, bloat, intent match) and on
    the labelled intent set."""
    from ..bench import ensure_bench, load_pairs
    from ..bench.evaluate import evaluate, render_markdown, spread
    from ..bench.intents import load_intent_set
    from ..bench.usersees import UserChecks
    from ..reward import ProxyReward

    names = agent or default_agents()
    for name in names:
        agent_spec(name, model, unconstrained)  # every name checked before any agent is built
    labelled: list[tuple[str, str]] = []
    if not no_intents:
        try:
            labelled = spread(load_intent_set(intents, intent_prompts), limit)
        except UserInputError as exc:
            fail(f"{exc}; pass --intent-prompts PATH or --no-intents")
    with open_filled_store() as store:
        if pairs is None:
            with progress_bar("building DABench") as update:
                pairs = ensure_bench(store, progress=update) / "test.jsonl"
        chosen = spread(load_pairs(pairs), limit)
        if not chosen:
            fail(f"{pairs}: no pairs")
        reward = ProxyReward(store)
        checks = UserChecks(store)
        rows = []
        for name in names:
            selector = build_agent(
                store,
                name,
                splits=("train",),
                model=model,
                unconstrained=unconstrained,
                allow_nsfw=allow_nsfw,
                allow_poi=allow_poi,
                workers=workers,
            )
            with progress_bar(f"evaluating {name}") as update:
                rows.append(
                    evaluate(
                        selector,
                        chosen,
                        store,
                        name=name,
                        k=k,
                        latency_prompts=latency_prompts,
                        reward=reward,
                        progress=update,
                        intents=labelled,
                        checks=checks,
                    )
                )
            selector.close()
    if as_json:
        typer.echo(json.dumps({"rows": rows}))
    else:
        typer.echo(render_markdown(rows), nl=False)

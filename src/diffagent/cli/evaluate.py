"""``diffagent eval``: DABench metrics of one or more agents on a pairs file."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import typer

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
    limit: int = typer.Option(None, "--limit", min=1, help="score at most N pairs, spread over the file"),
    k: int = typer.Option(5, "--k", min=1, help="alternatives per answer (model@5 needs 5)"),
    latency_prompts: int = typer.Option(200, min=1, help="prompts timed one at a time for p50/p95"),
    model: str = typer.Option(None, "--model", help="trained model name or path (--agent llm)"),
    unconstrained: bool = typer.Option(
        False, "--unconstrained", help="let the LLM agent decode freely (--agent llm)"
    ),
) -> None:
    """Score agents on DABench pairs: model@1/@5, base@1, hallucination, parameters, reward, speed."""
    from ..bench import ensure_bench, load_pairs
    from ..bench.evaluate import evaluate, render_markdown, spread
    from ..reward import ProxyReward

    names = agent or default_agents()
    for name in names:
        agent_spec(name, model, unconstrained)  # every name checked before any agent is built
    with open_filled_store() as store:
        if pairs is None:
            with progress_bar("building DABench") as update:
                pairs = ensure_bench(store, progress=update) / "test.jsonl"
        chosen = spread(load_pairs(pairs), limit)
        if not chosen:
            fail(f"{pairs}: no pairs")
        reward = ProxyReward(store)
        rows = []
        for name in names:
            selector = build_agent(store, name, splits=("train",), model=model, unconstrained=unconstrained)
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
                    )
                )
    if as_json:
        typer.echo(json.dumps({"rows": rows}))
    else:
        typer.echo(render_markdown(rows), nl=False)

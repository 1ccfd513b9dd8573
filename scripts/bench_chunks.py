"""Peak memory and speed of the default agent's batch for one chunk size, in a fresh process.

    DIFFAGENT_HOME=.home python scripts/bench_chunks.py 256
    DIFFAGENT_HOME=.home python scripts/bench_chunks.py 64

The agent (train split, both flags, one process) answers the first 2,000 DABench test prompts with its
chunk size (``_BATCH`` in ``agents/default/agent.py``) set to the argument; the line printed gives the
process's peak resident memory after loading and after the batch, and prompts per second. Run sizes
alternately, one at a time: the peak is per process, the speed moves with the machine's load.
"""

from __future__ import annotations

import argparse
import resource
import time

from diffagent.agents.default import agent as default_agent
from diffagent.bench import ensure_bench, load_pairs
from diffagent.catalog import Store
from diffagent.config import store_path


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("chunk", type=int, help="prompts answered together")
    parser.add_argument("--prompts", type=int, default=2000)
    args = parser.parse_args()
    default_agent._BATCH = args.chunk
    store = Store(store_path())
    bench = ensure_bench(store)
    agent = default_agent.build_default_agent(
        store, load_pairs(bench / "train.jsonl"), allow_nsfw=True, allow_poi=True, workers=1
    )
    prompts = [p.instruction for p in load_pairs(bench / "test.jsonl")][: args.prompts]
    loaded = _peak_mb()
    began = time.perf_counter()
    agent.select_batch(prompts)
    seconds = time.perf_counter() - began
    print(
        f"chunk {args.chunk}: peak {loaded:.0f} MB loaded, {_peak_mb():.0f} MB after the batch;"
        f" {len(prompts) / seconds:.0f} prompts/s"
    )


if __name__ == "__main__":
    main()

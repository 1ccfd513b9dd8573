"""Write the labelled intent set (labels only) from the DiffusionDB prompts by the written rules.

    python scripts/label_intents.py [--prompts ../shared/data/diffusiondb-prompts/prompts-10k.json]

See ``diffagent.bench.intents`` and ``docs/intent-rules.md``.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

from diffagent._io import write_jsonl
from diffagent.bench.intents import DIFFUSIONDB_PROMPTS, INTENT_LABELS, label_prompts, read_prompts_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=Path, default=DIFFUSIONDB_PROMPTS)
    parser.add_argument("--per-style", type=int, default=200)
    parser.add_argument("--out", type=Path, default=INTENT_LABELS)
    args = parser.parse_args()
    labels = label_prompts(read_prompts_file(args.prompts), args.per_style)
    write_jsonl(args.out, labels)
    counts = collections.Counter(label["intent"] for label in labels)
    print(f"{args.out}: {len(labels)} labels, {dict(counts)}")


if __name__ == "__main__":
    main()

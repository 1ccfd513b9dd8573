"""The default agent: retrieval over the catalogue's examples and cards, then a learned ranker.

``index`` builds what the agent searches (checkpoints, example prompts), ``loras`` picks LoRAs, ``params``
the settings, ``ranker`` orders the candidates, and ``agent`` puts them together and caches the result.
"""

from .agent import DefaultIndex, RetrievalAgent, build_default_agent, cache_dir, train_default

__all__ = ["DefaultIndex", "RetrievalAgent", "build_default_agent", "cache_dir", "train_default"]

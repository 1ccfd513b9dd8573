"""Agents that answer a prompt with an API call: the default retrieval agent, the LLM agent, baselines.

Agents are looked up by name and imported lazily, so that a command that needs one agent does not pay
for the imports of the others (the LLM agent pulls in torch).
"""

from __future__ import annotations

import importlib
from typing import Any

from ..extras import require
from ..protocols import Agent

__all__ = ["AGENT_NAMES", "LLM_DECODINGS", "Agent", "load_agent"]

# name -> "module:factory"; each factory takes (store, examples, **options) and returns an Agent.
_REGISTRY: dict[str, str] = {
    "default": "diffagent.agents.default.agent:build_default_agent",
    "random": "diffagent.agents.baselines:RandomAgent",
    "popular": "diffagent.agents.baselines:PopularAgent",
    "keyword": "diffagent.agents.baselines:KeywordAgent",
    "tfidf": "diffagent.agents.baselines:TfidfAgent",
    "llm": "diffagent.agents.llm:build_llm_agent",
}
AGENT_NAMES = tuple(_REGISTRY)
LLM_DECODINGS = ("rerank", "trie", "free")
"""How the LLM agent may decode (see :mod:`.llm`); here so that the CLI need not import torch."""


def load_agent(name: str, store: Any, examples: Any, **options: Any) -> Agent:
    """Build agent ``name`` over the catalogue ``store``, learning only from the DABench pairs ``examples``.

    ``examples`` is what the agent may see: the train split when it is evaluated, every split in use.
    """
    from ..errors import UserInputError

    if name not in _REGISTRY:
        raise UserInputError(f"unknown agent {name!r}; choose one of: {', '.join(AGENT_NAMES)}")
    if name == "llm":
        require("llm", "the LLM agent")
    module, factory = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), factory)(store, examples, **options)

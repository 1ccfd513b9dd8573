"""Training: one trainer per algorithm (the default agent's ranker, SFT, RRHF) and what they share.

- :mod:`.config`: TRL-style dataclass configurations (no heavy imports, read by the command line).
- :mod:`.ranker`: LambdaRank over candidate features, for the default agent.
- :mod:`.adapters`: which weights a run trains (LoRA adapters or all).
- :mod:`.losses`: response log-likelihoods after a shared prompt, the SFT and RRHF losses.
- :mod:`.data`: training pairs and their retriever candidates; :mod:`.loop`: the shared optimiser loop.
- :mod:`.sft`, :mod:`.rrhf`: the LLM agent's two stages, on the runtime in :mod:`diffagent.llm`.

Submodules are imported on use: most pull in torch.
"""

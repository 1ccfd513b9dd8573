"""Training: the LLM agent's two stages (SFT, then RRHF against a reward) and what they share.

- :mod:`.config`: TRL-style dataclass configurations (no heavy imports, read by the command line).
- :mod:`.models`: the offline base model (converted once from a GGUF), trained models, loading, saving.
- :mod:`.codec`: the prompt and the answer's compact JSON, tokenized piece by piece.
- :mod:`.grammar`: constrained decoding over catalogue names; :mod:`.generate`: writing answers.
- :mod:`.losses`: response log-likelihoods after a shared prompt, the SFT and RRHF losses.
- :mod:`.data`: training pairs and their retriever candidates; :mod:`.loop`: the shared optimiser loop.
- :mod:`.sft`, :mod:`.rrhf`: the two stages.

Submodules are imported on use: most pull in torch.
"""

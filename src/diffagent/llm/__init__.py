"""The LLM agent's runtime, shared by its training and its inference.

- :mod:`.config`: how a request becomes a prompt, and the default base model (no heavy imports).
- :mod:`.models`: the offline base model (converted once from a GGUF), trained models, loading, saving.
- :mod:`.codec`: the prompt and the answer's compact JSON, tokenized piece by piece.
- :mod:`.grammar`: constrained decoding over catalogue names; :mod:`.generate`: writing answers.

Submodules are imported on use: most pull in torch.
"""

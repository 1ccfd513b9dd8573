"""diffagent: a prompt in, an executable text-to-image API call out, naming only real catalogue models."""

from .schema import Alternative, Answer, APICall, Checkpoint, Evidence, LoRA, api_json_schema

__all__ = [
    "APICall",
    "Alternative",
    "Answer",
    "Checkpoint",
    "DiffAgent",
    "Evidence",
    "LoRA",
    "api_json_schema",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # DiffAgent pulls in catalogue, bench and agents: imported on first use to keep `import diffagent` cheap
    if name == "DiffAgent":
        from .client import DiffAgent

        return DiffAgent
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""diffagent: a prompt in, an executable text-to-image API call out, naming only real catalogue models."""

from .schema import Alternative, Answer, APICall, Checkpoint, Evidence, LoRA, api_json_schema

__all__ = ["APICall", "Alternative", "Answer", "Checkpoint", "Evidence", "LoRA", "api_json_schema"]
__version__ = "0.1.0"

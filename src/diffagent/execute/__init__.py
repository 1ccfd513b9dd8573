"""Run an API call: payloads for AUTOMATIC1111, ComfyUI and diffusers."""

from .payloads import FORMATS, download_url, to_a1111, to_comfyui, to_diffusers, to_payload

__all__ = ["FORMATS", "download_url", "to_a1111", "to_comfyui", "to_diffusers", "to_payload"]

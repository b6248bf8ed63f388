"""tts-opt: serve optimized multi-LLM collaboration graphs as OpenAI-compatible endpoints."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tts-opt")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

"""The OpenAI-compatible server: graph artifacts as task profiles on co-hosted engines.

`create_app` builds the Litestar app; `tts_opt.cli.serve_command.serve` runs it on uvicorn.
"""

"""Convert a GGUF checkpoint to an HF safetensors directory that vLLM can load on CPU.

vLLM cannot load GGUF on CPU, so each embedded model is dequantized once with transformers.
The conversion runs in a child process (`python -m tts_opt.models.convert`): it peaks at several
GiB and parses the GGUF metadata with slow pure-Python code, and a child process hands all of
that memory back and keeps transformers' progress bars out of the caller's terminal.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from tts_opt.models.assemble import INSTALL_HINT, MissingWeightsError
from tts_opt.models.errors import ModelError


class ConversionError(ModelError, RuntimeError):
    """The GGUF -> safetensors conversion failed or produced a broken tokenizer."""


def convert_in_subprocess(gguf: Path, out_dir: Path, *, add_bos: bool, chat: bool) -> None:
    args = [sys.executable, "-m", "tts_opt.models.convert", str(gguf), str(out_dir)]
    args += ["--add-bos"] * add_bos + ["--chat"] * chat
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if proc.returncode == 3:
        raise MissingWeightsError(proc.stderr.strip().splitlines()[-1])
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise ConversionError(f"converting {gguf.name} failed (exit {proc.returncode}):\n{tail}")


def convert(gguf: Path, out_dir: Path, *, add_bos: bool, chat: bool) -> None:
    """Dequantize `gguf` to bfloat16 safetensors plus tokenizer in `out_dir`, then check it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    # dequantize=True: without it transformers looks for packed-GGUF matmul kernels on the hub.
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent,
        gguf_file=gguf.name,
        dtype=torch.bfloat16,
        quantization_config=GgufConfig(dequantize=True),
    )
    # A dequantized model is a plain one; the GGUF quantizer would refuse to serialize it.
    # Set by the loader but undeclared on the model class, so torch's Module typing applies.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    del model

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if add_bos:
        # A settable property: its setter is not next to its getter, where mypy looks.
        tokenizer.add_bos_token = True  # type: ignore[misc]
    tokenizer.save_pretrained(out_dir)
    check_tokenizer(out_dir, add_bos=add_bos, chat=chat)


def check_tokenizer(model_dir: Path, *, add_bos: bool, chat: bool) -> None:
    """Reload the saved tokenizer: a base model fed without <bos> produces garbage."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = tokenizer("The capital of France is").input_ids
    if add_bos and (tokenizer.bos_token_id is None or ids[0] != tokenizer.bos_token_id):
        raise ConversionError(
            f"the converted tokenizer does not add <bos> (first ids {ids[:3]}, "
            f"bos id {tokenizer.bos_token_id})"
        )
    if chat and not tokenizer.chat_template:
        raise ConversionError("the converted tokenizer lost the model's chat template")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("gguf", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--add-bos", action="store_true")
    parser.add_argument("--chat", action="store_true")
    args = parser.parse_args()
    try:
        import accelerate  # noqa: F401  (transformers needs it for GGUF loading)
        import gguf  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as error:
        print(f"the GGUF converter needs {error.name}: {INSTALL_HINT}", file=sys.stderr)
        sys.exit(3)
    convert(args.gguf, args.out_dir, add_bos=args.add_bos, chat=args.chat)


if __name__ == "__main__":
    main()

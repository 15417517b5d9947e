"""A zoo of real transformers and diffusers models, tiny and seeded, for tests and benchmarks.

Each model is the library's own class built from a small config with random weights (seeded),
so nothing is downloaded. ``build(name)`` gives the model in eval mode; ``inputs(name, batch)``
the keyword arguments of one call, seeded too. Importing this module imports neither library;
building a model imports its library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class ZooModel:
    """One model of the zoo: how to build it and what to call it with."""

    name: str
    library: str
    build: Callable[[], torch.nn.Module]
    inputs: Callable[[int], dict[str, Any]]


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ids(batch: int, length: int, vocab: int = 100, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length), generator=_seeded(seed))


def _gpt2() -> torch.nn.Module:
    import transformers

    config = transformers.GPT2Config(
        n_layer=2, n_head=2, n_embd=32, vocab_size=100, n_positions=64, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def _llama() -> torch.nn.Module:
    import transformers

    config = transformers.LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=100, max_position_embeddings=64, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config)


def _mistral() -> torch.nn.Module:
    import transformers

    config = transformers.MistralConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=100, max_position_embeddings=64, bos_token_id=0,
        eos_token_id=0, sliding_window=6,
    )  # fmt: skip
    return transformers.MistralForCausalLM(config)


def _bert() -> torch.nn.Module:
    import transformers

    config = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        vocab_size=100, max_position_embeddings=64,
    )  # fmt: skip
    return transformers.BertModel(config)


def _t5() -> torch.nn.Module:
    import transformers

    config: Any = transformers.T5Config  # some fields are not in its signature's hints
    config = config(
        d_model=32, d_ff=64, d_kv=8, num_layers=2, num_decoder_layers=2, num_heads=4,
        vocab_size=100, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    )  # fmt: skip
    return transformers.T5ForConditionalGeneration(config)


def _vit() -> torch.nn.Module:
    import transformers

    config = transformers.ViTConfig(
        image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64,
    )  # fmt: skip
    return transformers.ViTModel(config)


def _resnet() -> torch.nn.Module:
    import transformers

    config = transformers.ResNetConfig(
        num_channels=3, embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
        layer_type="basic",
    )  # fmt: skip
    return transformers.ResNetModel(config)


def _whisper() -> torch.nn.Module:
    import transformers

    config = transformers.WhisperConfig(
        vocab_size=100, num_mel_bins=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, d_model=32,
        encoder_ffn_dim=64, decoder_ffn_dim=64, max_source_positions=16,
        max_target_positions=32, decoder_start_token_id=0, pad_token_id=0, bos_token_id=0,
        eos_token_id=0, begin_suppress_tokens=None, suppress_tokens=None,
    )  # fmt: skip
    return transformers.WhisperModel(config)


def _unet() -> torch.nn.Module:
    import diffusers

    unet: Any = diffusers.UNet2DModel  # diffusers has no type hints
    return unet(  # type: ignore[no-any-return]
        sample_size=16, in_channels=3, out_channels=3, layers_per_block=1,
        block_out_channels=(8, 16), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4,
    )  # fmt: skip


def _text(batch: int, *, cache: bool | None = None, length: int = 8) -> dict[str, Any]:
    found: dict[str, Any] = {
        "input_ids": _ids(batch, length),
        "attention_mask": torch.ones(batch, length, dtype=torch.long),
    }
    if cache is not None:
        found["use_cache"] = cache
    return found


def _seq2seq(batch: int) -> dict[str, Any]:
    return {**_text(batch), "decoder_input_ids": _ids(batch, 4, seed=2)}


def _pixels(batch: int) -> dict[str, Any]:
    return {"pixel_values": torch.randn(batch, 3, 32, 32, generator=_seeded(3))}


def _audio(batch: int) -> dict[str, Any]:
    return {
        "input_features": torch.randn(batch, 16, 32, generator=_seeded(4)),
        "decoder_input_ids": _ids(batch, 4, seed=2),
    }


def _diffusion(batch: int) -> dict[str, Any]:
    return {
        "sample": torch.randn(batch, 3, 16, 16, generator=_seeded(5)),
        "timestep": torch.tensor([10] * batch),
    }


MODELS: dict[str, ZooModel] = {
    model.name: model
    for model in (
        ZooModel("gpt2", "transformers", _gpt2, lambda b: _text(b, cache=False)),
        ZooModel("gpt2-cache", "transformers", _gpt2, lambda b: _text(b, cache=True)),
        ZooModel("llama-cache", "transformers", _llama, lambda b: _text(b, cache=True)),
        ZooModel("mistral-cache", "transformers", _mistral, lambda b: _text(b, cache=True)),
        ZooModel("bert", "transformers", _bert, _text),
        ZooModel("t5", "transformers", _t5, _seq2seq),
        ZooModel("vit", "transformers", _vit, _pixels),
        ZooModel("resnet", "transformers", _resnet, _pixels),
        ZooModel("whisper", "transformers", _whisper, _audio),
        ZooModel("unet2d", "diffusers", _unet, _diffusion),
    )
}


def build(name: str, seed: int = 0) -> torch.nn.Module:
    """The zoo model ``name``, weights drawn from ``seed``, in eval mode."""
    torch.manual_seed(seed)
    return MODELS[name].build().eval()


def inputs(name: str, batch: int = 2) -> dict[str, Any]:
    """The keyword arguments of one call of ``name`` with ``batch`` examples."""
    return MODELS[name].inputs(batch)

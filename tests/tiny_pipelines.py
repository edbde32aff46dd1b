"""Tiny random LTX-Video, Wan 2.1 and CogVideoX pipelines, built in code with no download.

The component shapes follow diffusers' own fast tests (``get_dummy_components()`` in
tests/pipelines/{ltx,wan,cogvideo}); the tokenizer is a T5 Unigram vocabulary written here, since
the upstream tests fetch theirs from the Hub. Used by tests/test_engine_diffusers.py and bench/.

``save_tiny(family, folder)`` writes a diffusers-format folder (model_index.json + subfolders),
the same layout ``hf download`` gives for a real model, so the engine loads it the real way.
"""

from __future__ import annotations

from pathlib import Path

FAMILIES = ("ltx", "wan", "cogvideox")

_WORDS = ("cat", "dog", "red", "blue", "sky", "sea", "a", "the", "on", "in", "walks", "runs", "over", "city", "night")


def tiny_tokenizer():
    """A T5 tokenizer over a small Unigram vocabulary: pad=0, eos=1, unk=2 as in T5."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -3.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789.,"]
    pieces += [("\u2581" + w, -1.0) for w in _WORDS]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def _text_encoder(vocab_size: int, umt5: bool = False):
    # d_model=32 must match the transformer's caption_channels / text_embed_dim / text_dim
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    kwargs = dict(vocab_size=vocab_size, d_model=32, d_ff=37, d_kv=8, num_heads=4, num_layers=2,
                  relative_attention_num_buckets=8, dropout_rate=0.0)
    if umt5:  # Wan's real text encoder is UMT5; using it silences diffusers' type warning
        return UMT5EncoderModel(UMT5Config(**kwargs)).eval()
    return T5EncoderModel(T5Config(**kwargs)).eval()


def tiny_ltx():
    import torch
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline, LTXVideoTransformer3DModel

    torch.manual_seed(0)
    tok = tiny_tokenizer()
    transformer = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=4, attention_head_dim=8,
        cross_attention_dim=32, num_layers=1, caption_channels=32,
    )
    # 4x compression in space and time (the real VAE: 32x and 8x)
    vae = AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8,) * 4,
        decoder_block_out_channels=(8,) * 4, layers_per_block=(1,) * 5, decoder_layers_per_block=(1,) * 5,
        spatio_temporal_scaling=(True, True, False, False), decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False,) * 5, upsample_residual=(False,) * 4, upsample_factor=(1,) * 4,
        timestep_conditioning=False, patch_size=1, patch_size_t=1, encoder_causal=True, decoder_causal=False,
    )
    return LTXPipeline(tokenizer=tok, text_encoder=_text_encoder(len(tok)), scheduler=FlowMatchEulerDiscreteScheduler(),
                       transformer=transformer, vae=vae)


def tiny_wan():
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel

    torch.manual_seed(0)
    tok = tiny_tokenizer()
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        rope_max_seq_len=1024,  # the upstream test's 32 breaks above tiny sizes
    )
    return WanPipeline(tokenizer=tok, text_encoder=_text_encoder(len(tok), umt5=True), transformer=transformer,
                       transformer_2=None, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0))


def tiny_cogvideox():
    import torch
    from diffusers import AutoencoderKLCogVideoX, CogVideoXPipeline, CogVideoXTransformer3DModel, DDIMScheduler

    torch.manual_seed(0)
    tok = tiny_tokenizer()
    # native size = sample_{height,width} * 8 (VAE) = 16x16, 9 frames (the real 2B: 480x720, 49 frames)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=4, attention_head_dim=8, in_channels=4, out_channels=4, time_embed_dim=2,
        text_embed_dim=32, num_layers=1, sample_width=2, sample_height=2, sample_frames=9, patch_size=2,
        temporal_compression_ratio=4, max_text_seq_length=16,
    )
    vae = AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8,) * 4, latent_channels=4,
        layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4,
    )
    return CogVideoXPipeline(tokenizer=tok, text_encoder=_text_encoder(len(tok)), transformer=transformer, vae=vae,
                             scheduler=DDIMScheduler())


BUILDERS = {"ltx": tiny_ltx, "wan": tiny_wan, "cogvideox": tiny_cogvideox}


def build_tiny(family: str):
    pipe = BUILDERS[family]()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny(family: str, folder: str | Path) -> Path:
    """Write a tiny random pipeline of ``family`` to ``folder`` in diffusers format; returns the folder."""
    folder = Path(folder)
    build_tiny(family).save_pretrained(folder)
    return folder

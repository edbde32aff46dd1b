"""The families bench_gpu_models.py builds: published transformer and VAE sizes, native grids, prompt widths.

Every size here is a published one (SOURCES says where each comes from); ``small=True`` swaps in a
reduced architecture of the same classes (few layers, narrow widths) and a small grid, for the CPU
smoke run. Weights are random, created directly on the target device in the run's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCES = {
    "wan2.2-ti2v-5b": (
        "transformer: Wan-AI/Wan2.2-TI2V-5B config (dim 3072 = 24 heads x 128, ffn 14336, 30 layers, 48 latent "
        "channels in/out, text 4096; as in the Wan2.2 repo's wan/configs/wan_ti2v_5B.py), the rest "
        "WanTransformer3DModel defaults; VAE: Wan-AI/Wan2.2-TI2V-5B-Diffusers vae/config.json (base_dim 160, "
        "decoder_base_dim 256, z_dim 48, residual, patch 2, 16x space / 4x time); scheduler UniPC flow_shift 5.0; "
        "grid 1280x704, 121 frames at 24 fps (the checkpoint's only size); text: UMT5-XXL, 512 x 4096"),
    "ltx2": (
        "transformer, connectors, video VAE, audio VAE, vocoder: the '2.0' configs of diffusers' "
        "scripts/convert_ltx2_to_diffusers.py (Lightricks/LTX-2 19B: 48 layers, video 32 x 128, audio 32 x 64, "
        "caption 3840; these equal the installed classes' defaults apart from rope_type='split' and the VAE's "
        "decoder_causal=False); grid 768x512 (LTX2Pipeline's default, the two-stage recipe's stage-1 size), "
        "121 frames at 24 fps; text: Gemma-3-12B hidden states, 1024 x (3840 x 49 layers)"),
    "hunyuanvideo-1.5": (
        "transformer: the '480p_t2v' config of diffusers' scripts/convert_hunyuan_video1_5_to_diffusers.py "
        "(8.3B: 54 layers, 16 heads x 128, target_size 640, task t2v), VAE: AutoencoderKLHunyuanVideo15 defaults "
        "(32 latent channels, 16x space / 4x time), scheduler shift 5.0, CFG 6.0; grid 848x480, 121 frames at "
        "24 fps; text: Qwen2.5-VL-7B 1000 x 3584 and ByT5 256 x 1472 (full length: an upper bound)"),
}


@dataclass(frozen=True)
class Grid:
    width: int
    height: int
    frames: int
    fps: int


@dataclass(frozen=True)
class Family:
    key: str  # the name on the command line
    engine_family: str  # reelforge.engines.diffusers.families.FAMILIES key: the recipe and apply_speed's family
    model: str  # reelforge.engines.diffusers.families.KNOWN_MODELS key
    grid: Grid
    small_grid: Grid


FAMILIES = {
    "wan2.2-ti2v-5b": Family("wan2.2-ti2v-5b", "wan", "wan2.2-ti2v-5b", Grid(1280, 704, 121, 24),
                             Grid(256, 256, 17, 24)),
    "ltx2": Family("ltx2", "ltx2", "ltx-2", Grid(768, 512, 121, 24), Grid(256, 256, 17, 24)),
    "hunyuanvideo-1.5": Family("hunyuanvideo-1.5", "hunyuanvideo15", "hunyuanvideo-1.5", Grid(848, 480, 121, 24),
                               Grid(128, 128, 9, 24)),
}


def make(cls, config: dict, device, dtype):
    """``cls(**config)`` with random weights created on ``device`` in ``dtype`` (the default dtype during
    ``__init__``: no float32 copy of a 19B model exists at any time), then, as ``from_pretrained`` does,
    the class's ``_keep_in_fp32_modules`` parameters in float32 (buffers made in an explicit dtype keep it)."""
    import torch

    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = cls(**config)
    finally:
        torch.set_default_dtype(before)
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    if dtype != torch.float32:
        for name, param in model.named_parameters():
            if any(k in name.split(".") for k in keep):
                param.data = param.data.float()
    return model.eval().requires_grad_(False)


# ------------------------------------------------------------------ Wan 2.2 TI2V-5B

def _wan(small: bool, device, dtype, vae_dtype):
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel

    tr = dict(patch_size=(1, 2, 2), num_attention_heads=24, attention_head_dim=128, in_channels=48, out_channels=48,
              text_dim=4096, freq_dim=256, ffn_dim=14336, num_layers=30, cross_attn_norm=True,
              qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
    vae = dict(base_dim=160, decoder_base_dim=256, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
               temperal_downsample=[False, True, True], is_residual=True, in_channels=12, out_channels=12,
               patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4,
               latents_mean=[0.0] * 48, latents_std=[1.0] * 48)  # the published statistics do not change the time
    if small:
        tr.update(num_attention_heads=4, attention_head_dim=32, text_dim=64, ffn_dim=256, num_layers=4)
        vae.update(base_dim=8, decoder_base_dim=16, num_res_blocks=1)
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0)
    return WanPipeline(tokenizer=None, text_encoder=None, vae=make(AutoencoderKLWan, vae, device, vae_dtype),
                       scheduler=scheduler, transformer=make(WanTransformer3DModel, tr, device, dtype), transformer_2=None,
                       boundary_ratio=None, expand_timesteps=True)


def _wan_embeds(small: bool, device, dtype):
    import torch

    shape = (1, 16, 64) if small else (1, 512, 4096)
    return {"prompt_embeds": torch.randn(shape, device=device, dtype=dtype),
            "negative_prompt_embeds": torch.randn(shape, device=device, dtype=dtype)}


# ------------------------------------------------------------------ LTX-2 19B

def _ltx2(small: bool, device, dtype, vae_dtype):
    from diffusers import (
        AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, FlowMatchEulerDiscreteScheduler, LTX2Pipeline,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

    tr = dict(rope_type="split")  # otherwise the class defaults are the published 2.0 config
    conn = dict(rope_type="split")
    vae = dict(decoder_causal=False, spatial_compression_ratio=32, temporal_compression_ratio=8)
    audio_vae, vocoder = {}, {}
    if small:
        tr.update(num_attention_heads=4, attention_head_dim=16, cross_attention_dim=64, audio_in_channels=4,
                  audio_out_channels=4, audio_num_attention_heads=2, audio_attention_head_dim=16,
                  audio_cross_attention_dim=32, num_layers=4, caption_channels=32, in_channels=32, out_channels=32)
        conn.update(caption_channels=32, text_proj_in_factor=3, video_connector_num_attention_heads=4,
                    video_connector_attention_head_dim=8, video_connector_num_layers=1,
                    video_connector_num_learnable_registers=None, audio_connector_num_attention_heads=4,
                    audio_connector_attention_head_dim=8, audio_connector_num_layers=1,
                    audio_connector_num_learnable_registers=None, connector_rope_base_seq_len=32)
        vae.update(latent_channels=32, block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(16, 32, 64),
                   layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1))
        audio_vae = dict(base_channels=4, ch_mult=(1,), num_res_blocks=1, resolution=32, latent_channels=2, mel_bins=8)
        vocoder = dict(in_channels=16, hidden_channels=32, upsample_factors=[10, 16], upsample_kernel_sizes=[20, 32],
                       resnet_kernel_sizes=[3], resnet_dilations=[[1, 3, 5]], output_sampling_rate=16000)
    return LTX2Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=make(AutoencoderKLLTX2Video, vae, device, vae_dtype),
                        audio_vae=make(AutoencoderKLLTX2Audio, audio_vae, device, vae_dtype), text_encoder=None,
                        tokenizer=None, connectors=make(LTX2TextConnectors, conn, device, dtype),
                        transformer=make(LTX2VideoTransformer3DModel, tr, device, dtype),
                        vocoder=make(LTX2Vocoder, vocoder, device, vae_dtype))


def _ltx2_embeds(small: bool, device, dtype):
    import torch

    seq, width = (16, 32 * 3) if small else (1024, 3840 * 49)
    out = {}
    for prefix in ("", "negative_"):
        out[f"{prefix}prompt_embeds"] = torch.randn((1, seq, width), device=device, dtype=dtype)
        out[f"{prefix}prompt_attention_mask"] = torch.ones((1, seq), device=device, dtype=torch.long)
    return out


# ------------------------------------------------------------------ HunyuanVideo 1.5 8.3B

def _hunyuan(small: bool, device, dtype, vae_dtype):
    from diffusers import (
        AutoencoderKLHunyuanVideo15, ClassifierFreeGuidance, FlowMatchEulerDiscreteScheduler, HunyuanVideo15Pipeline,
        HunyuanVideo15Transformer3DModel,
    )

    tr = dict(in_channels=65, out_channels=32, num_attention_heads=16, attention_head_dim=128, num_layers=54,
              num_refiner_layers=2, mlp_ratio=4.0, patch_size=1, patch_size_t=1, qk_norm="rms_norm",
              text_embed_dim=3584, text_embed_2_dim=1472, image_embed_dim=1152, rope_theta=256.0,
              rope_axes_dim=(16, 56, 56), use_meanflow=False, target_size=640, task_type="t2v")
    vae = {}
    if small:
        tr.update(in_channels=17, out_channels=8, num_attention_heads=4, attention_head_dim=16, num_layers=4,
                  num_refiner_layers=1, text_embed_dim=32, text_embed_2_dim=32, image_embed_dim=16,
                  rope_axes_dim=(4, 6, 6), target_size=128)
        vae = dict(latent_channels=8, block_out_channels=(16,) * 5, layers_per_block=1)
    return HunyuanVideo15Pipeline(
        text_encoder=None, tokenizer=None, transformer=make(HunyuanVideo15Transformer3DModel, tr, device, dtype),
        vae=make(AutoencoderKLHunyuanVideo15, vae, device, vae_dtype), scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
        text_encoder_2=None, tokenizer_2=None, guider=ClassifierFreeGuidance(guidance_scale=6.0))


def _hunyuan_embeds(small: bool, device, dtype):
    import torch

    (seq, width), (seq2, width2) = ((16, 32), (8, 32)) if small else ((1000, 3584), (256, 1472))
    out = {}
    for prefix in ("", "negative_"):
        out[f"{prefix}prompt_embeds"] = torch.randn((1, seq, width), device=device, dtype=dtype)
        out[f"{prefix}prompt_embeds_mask"] = torch.ones((1, seq), device=device, dtype=torch.long)
        out[f"{prefix}prompt_embeds_2"] = torch.randn((1, seq2, width2), device=device, dtype=dtype)
        out[f"{prefix}prompt_embeds_mask_2"] = torch.ones((1, seq2), device=device, dtype=torch.long)
    return out


_BUILDERS = {"wan": (_wan, _wan_embeds), "ltx2": (_ltx2, _ltx2_embeds), "hunyuanvideo15": (_hunyuan, _hunyuan_embeds)}


def build_pipeline(family: Family, small: bool, device, dtype, vae_dtype):
    """A fresh pipeline whose models hold random weights, created on ``device`` (a 19B model never passes
    through CPU memory); transformer and text connectors in ``dtype``, the VAE (and LTX-2's audio parts) in
    ``vae_dtype``."""
    pipe = _BUILDERS[family.engine_family][0](small, device, dtype, vae_dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def prompt_embeds(family: Family, small: bool, device, dtype) -> dict:
    """Random prompt embeddings of the real text encoders' width and length (reduced when small)."""
    return _BUILDERS[family.engine_family][1](small, device, dtype)

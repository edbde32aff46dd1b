"""Tiny random pipelines of every family the diffusers engine drives, built in code with no download.

LTX-Video, LTX-2 (with audio), Wan 2.1 (T2V, I2V), Wan 2.2 (TI2V-5B, A14B T2V and I2V with two
experts), HunyuanVideo 1.5 (T2V, I2V), CogVideoX (2B T2V, 5B I2V) and SkyReels-V2 (the generic
door). The component shapes follow diffusers' own fast tests and
../shared/reference/tiny-video-pipelines.md; the tokenizers are vocabularies written here, since
no wheel ships tokenizer files. Used by tests/test_engine_diffusers.py and bench/.

``save_tiny(family, folder)`` writes a diffusers-format folder (model_index.json + subfolders),
the same layout ``hf download`` gives for a real model, so the engine loads it the real way.
"""

from __future__ import annotations

from pathlib import Path

FAMILIES = ("ltx", "wan", "cogvideox")  # the first three; BUILDERS holds every layout

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
    # native size = sample_{height,width} * 8 (VAE) = 64x64, 9 frames (the real 2B: 720x480, 49 frames)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=4, attention_head_dim=8, in_channels=4, out_channels=4, time_embed_dim=2,
        text_embed_dim=32, num_layers=1, sample_width=8, sample_height=8, sample_frames=9, patch_size=2,
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
    """Write a tiny random pipeline of ``family`` to ``folder`` in diffusers format; returns the folder.

    ``ltx2-two-stage`` is the LTX-2 folder plus a ``latent_upsampler/`` (as Lightricks/LTX-2 has one).
    """
    folder = Path(folder)
    build_tiny("ltx2" if family == "ltx2-two-stage" else family).save_pretrained(folder)
    if family == "ltx2-two-stage":
        import torch
        from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel

        torch.manual_seed(0)
        LTX2LatentUpsamplerModel(in_channels=8, mid_channels=32, num_blocks_per_stage=1, dims=3).save_pretrained(
            folder / "latent_upsampler")
    return folder


# ------------------------------------------------------------------ 2025-26 families
# Configs follow ../shared/reference/tiny-video-pipelines.md (checked offline with diffusers 0.42.1).


def gemma_tokenizer():
    """A Gemma tokenizer from an in-code vocabulary: specials, the 256 byte-fallback tokens, a few words."""
    from transformers import GemmaTokenizer

    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"])}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for w in _WORDS:
        vocab.setdefault("\u2581" + w, len(vocab))
    return GemmaTokenizer(vocab=vocab, merges=[], model_max_length=64)


def tiny_ltx2():
    import torch
    from diffusers import (
        AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, FlowMatchEulerDiscreteScheduler, LTX2Pipeline,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    torch.manual_seed(0)
    tok = gemma_tokenizer()
    n = len(tok)
    text = dict(vocab_size=n + 3, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=1, head_dim=16, max_position_embeddings=256, sliding_window=64,
                query_pre_attn_scalar=16, pad_token_id=0, eos_token_id=1, bos_token_id=2)
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                  patch_size=14)
    encoder = Gemma3ForConditionalGeneration(Gemma3Config(
        text_config=text, vision_config=vision, mm_tokens_per_image=4, boi_token_index=n, eoi_token_index=n + 1,
        image_token_index=n + 2)).eval()
    connectors = LTX2TextConnectors(
        caption_channels=32, text_proj_in_factor=3, video_connector_num_attention_heads=4,
        video_connector_attention_head_dim=8, video_connector_num_layers=1, video_connector_num_learnable_registers=None,
        audio_connector_num_attention_heads=4, audio_connector_attention_head_dim=8, audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None, connector_rope_base_seq_len=32, rope_theta=1e4,
        rope_double_precision=False, causal_temporal_positioning=False, rope_type="split")
    transformer = LTX2VideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=2, attention_head_dim=8,
        cross_attention_dim=16, audio_in_channels=4, audio_out_channels=4, audio_num_attention_heads=2,
        audio_attention_head_dim=4, audio_cross_attention_dim=8, num_layers=2, qk_norm="rms_norm_across_heads",
        caption_channels=32, rope_double_precision=False, rope_type="split")
    # the real compression (32x space, 8x time): a few latent tokens at 64x64, and an encoder that downsamples in time
    vae = AutoencoderKLLTX2Video(
        latent_channels=8, block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(16, 32, 64),
        layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, True), decoder_spatio_temporal_scaling=(True, True, True),
        decoder_inject_noise=(False, False, False, False),
        downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
        upsample_type=("spatiotemporal",) * 3, upsample_residual=(True, True, True), upsample_factor=(2, 2, 2),
        timestep_conditioning=False, patch_size=4, patch_size_t=1, spatial_compression_ratio=32,
        temporal_compression_ratio=8, encoder_causal=True, decoder_causal=False)
    vae.use_framewise_encoding = vae.use_framewise_decoding = False
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=4, output_channels=2, ch_mult=(1,), num_res_blocks=1, attn_resolutions=None, in_channels=2,
        resolution=32, latent_channels=2, norm_type="pixel", causality_axis="height", dropout=0.0,
        mid_block_add_attention=False, sample_rate=16000, mel_hop_length=160, is_causal=True, mel_bins=8)
    # the upsampling product equals mel_hop_length, so the waveform lasts as long as the video
    vocoder = LTX2Vocoder(in_channels=16, hidden_channels=32, out_channels=2, upsample_factors=[10, 16],
                          upsample_kernel_sizes=[20, 32], resnet_kernel_sizes=[3], resnet_dilations=[[1, 3, 5]],
                          leaky_relu_negative_slope=0.1, output_sampling_rate=16000)
    return LTX2Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, audio_vae=audio_vae,
                        text_encoder=encoder, tokenizer=tok, connectors=connectors, transformer=transformer,
                        vocoder=vocoder)


def _wan_transformer(in_channels: int, out_channels: int, **extra):
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=in_channels,
        out_channels=out_channels, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=1024, **extra)


def _wan(layout: str):
    """Wan layouts: "2.1-i2v" (CLIP image encoder), "2.2-5b" (48-channel VAE, expand_timesteps),
    "2.2-a14b-t2v" / "2.2-a14b-i2v" (two experts)."""
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanPipeline

    torch.manual_seed(0)
    tok = tiny_tokenizer()
    text_encoder = _text_encoder(len(tok), umt5=True)
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    common = dict(tokenizer=tok, text_encoder=text_encoder, scheduler=scheduler)
    if layout == "2.2-5b":
        vae = AutoencoderKLWan(base_dim=3, z_dim=48, in_channels=12, out_channels=12, is_residual=True, patch_size=2,
                               latents_mean=[0.0] * 48, latents_std=[1.0] * 48, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                               scale_factor_spatial=16, scale_factor_temporal=4, temperal_downsample=[False, True, True])
        return WanPipeline(vae=vae, transformer=_wan_transformer(48, 48), transformer_2=None, boundary_ratio=None,
                           expand_timesteps=True, **common)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    if layout == "2.2-a14b-t2v":
        return WanPipeline(vae=vae, transformer=_wan_transformer(16, 16), transformer_2=_wan_transformer(16, 16),
                           boundary_ratio=0.875, **common)
    if layout == "2.2-a14b-i2v":
        return WanImageToVideoPipeline(vae=vae, transformer=_wan_transformer(36, 16),
                                       transformer_2=_wan_transformer(36, 16), boundary_ratio=0.9,
                                       image_processor=None, image_encoder=None, **common)
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    encoder = CLIPVisionModel(CLIPVisionConfig(hidden_size=4, projection_dim=4, num_hidden_layers=2,
                                               num_attention_heads=2, image_size=32, intermediate_size=16,
                                               patch_size=1)).eval()
    return WanImageToVideoPipeline(vae=vae, transformer=_wan_transformer(36, 16, image_dim=4), transformer_2=None,
                                   image_processor=CLIPImageProcessor(crop_size=32, size=32), image_encoder=encoder,
                                   **common)


def qwen2_tokenizer():
    """A byte-level Qwen2 tokenizer from an in-code vocabulary, with the ChatML template the pipeline applies."""
    from tokenizers import AddedToken
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    vocab = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2}
    for ch in sorted(ByteLevel.alphabet()):
        vocab.setdefault(ch, len(vocab))
    tok = Qwen2Tokenizer(vocab=vocab, merges=[])
    tok.add_tokens([AddedToken("<|im_start|>", special=True), AddedToken("<|im_end|>", special=True)])
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                         "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    return tok


def _hunyuan15(i2v: bool):
    import torch
    from diffusers import (
        AutoencoderKLHunyuanVideo15, ClassifierFreeGuidance, FlowMatchEulerDiscreteScheduler, HunyuanVideo15Pipeline,
        HunyuanVideo15ImageToVideoPipeline, HunyuanVideo15Transformer3DModel,
    )
    from transformers import ByT5Tokenizer, Qwen2_5_VLTextConfig, Qwen2_5_VLTextModel, T5Config, T5EncoderModel

    torch.manual_seed(0)
    tok = qwen2_tokenizer()
    text_encoder = Qwen2_5_VLTextModel(Qwen2_5_VLTextConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=2048,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [1, 1, 2]},
        pad_token_id=0, bos_token_id=0, eos_token_id=2)).eval()
    text_encoder_2 = T5EncoderModel(T5Config(vocab_size=384, d_model=32, d_kv=8, d_ff=32, num_layers=1, num_heads=4,
                                             relative_attention_num_buckets=8, dropout_rate=0.0)).eval()
    # prod-style VAE (16x space, 4x time: the real ratios), 64 px target size
    vae = AutoencoderKLHunyuanVideo15(latent_channels=8, block_out_channels=(16,) * 5, layers_per_block=1,
                                      spatial_compression_ratio=16, temporal_compression_ratio=4)
    transformer = HunyuanVideo15Transformer3DModel(
        in_channels=17, out_channels=8, num_attention_heads=2, attention_head_dim=8, num_layers=1,
        num_refiner_layers=1, mlp_ratio=2.0, patch_size=1, patch_size_t=1, text_embed_dim=16, text_embed_2_dim=32,
        image_embed_dim=12, rope_axes_dim=(2, 2, 4), target_size=64, task_type="i2v" if i2v else "t2v")
    parts = dict(text_encoder=text_encoder, tokenizer=tok, transformer=transformer, vae=vae,
                 scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=text_encoder_2,
                 tokenizer_2=ByT5Tokenizer(), guider=ClassifierFreeGuidance(guidance_scale=6.0))
    if not i2v:
        return HunyuanVideo15Pipeline(**parts)
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    encoder = SiglipVisionModel(SiglipVisionConfig(hidden_size=12, intermediate_size=16, num_hidden_layers=1,
                                                   num_attention_heads=2, image_size=32, patch_size=8)).eval()
    return HunyuanVideo15ImageToVideoPipeline(**parts, image_encoder=encoder,
                                              feature_extractor=SiglipImageProcessor(size={"height": 32, "width": 32}))


def tiny_cogvideox_i2v():
    import torch
    from diffusers import (
        AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXImageToVideoPipeline, CogVideoXTransformer3DModel,
    )

    torch.manual_seed(0)
    tok = tiny_tokenizer()
    # 64x64 native (sample 8 latents x 8), 9 frames; image latents are concatenated: 2 x 4 channels in
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=8, out_channels=4, time_embed_dim=2,
        text_embed_dim=32, num_layers=1, sample_width=8, sample_height=8, sample_frames=9, patch_size=2,
        temporal_compression_ratio=4, max_text_seq_length=16, use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=True)
    vae = AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8,) * 4, latent_channels=4,
        layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4)
    return CogVideoXImageToVideoPipeline(tokenizer=tok, text_encoder=_text_encoder(len(tok)), transformer=transformer,
                                         vae=vae, scheduler=CogVideoXDDIMScheduler())


def tiny_skyreels_v2():
    """SkyReels-V2 text-to-video: no family table in the engine, it runs through the generic door."""
    import torch
    from diffusers import AutoencoderKLWan, SkyReelsV2Pipeline, SkyReelsV2Transformer3DModel, UniPCMultistepScheduler

    torch.manual_seed(0)
    tok = tiny_tokenizer()
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    transformer = SkyReelsV2Transformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        rope_max_seq_len=1024)
    return SkyReelsV2Pipeline(tokenizer=tok, text_encoder=_text_encoder(len(tok), umt5=True), transformer=transformer,
                              vae=vae, scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction",
                                                                         use_flow_sigmas=True, flow_shift=8.0))


BUILDERS.update({
    "ltx2": tiny_ltx2,
    "wan2.1-i2v": lambda: _wan("2.1-i2v"),
    "wan2.2-5b": lambda: _wan("2.2-5b"),
    "wan2.2-a14b-t2v": lambda: _wan("2.2-a14b-t2v"),
    "wan2.2-a14b-i2v": lambda: _wan("2.2-a14b-i2v"),
    "hunyuan15": lambda: _hunyuan15(False),
    "hunyuan15-i2v": lambda: _hunyuan15(True),
    "cogvideox-i2v": tiny_cogvideox_i2v,
    "skyreels-v2": tiny_skyreels_v2,
})

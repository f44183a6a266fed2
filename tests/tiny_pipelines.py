"""Tiny diffusers models and pipelines with random weights, built from configs and local vocabularies (no hub).

As diffusers' own fast tests do, but with the tokenizers made here: a byte-level CLIP BPE
vocabulary with no merges (every character a token) and a word-level T5-style tokenizer.
"""

import json
import os

import torch


def _byte_chars():
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    rest = [b for b in range(256) if b not in keep]
    return [chr(c) for c in keep] + [chr(256 + i) for i in range(len(rest))]


def clip_tokenizer(tmp, max_length=12):
    from transformers import CLIPTokenizer
    chars = _byte_chars()
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    with open(os.path.join(tmp, "vocab.json"), "w") as f:
        json.dump(vocab, f)
    with open(os.path.join(tmp, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n")
    return CLIPTokenizer(os.path.join(tmp, "vocab.json"), os.path.join(tmp, "merges.txt"), model_max_length=max_length)


def t5_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    words = ["<pad>", "</s>", "<unk>", "a", "cat", "dog", "photo", "of", "the", "red", "blue"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=16)


def clip_text(tok, projection=False, seed=0, hidden=8):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
    torch.manual_seed(seed)
    cfg = CLIPTextConfig(bos_token_id=len(tok) - 2, eos_token_id=len(tok) - 1, pad_token_id=len(tok) - 1,
                         hidden_size=hidden, intermediate_size=16, num_attention_heads=2, num_hidden_layers=2,
                         vocab_size=len(tok), max_position_embeddings=tok.model_max_length, projection_dim=8,
                         layer_norm_eps=1e-5)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg).eval()


def vae(latent_channels=4, **extra):
    from diffusers import AutoencoderKL
    torch.manual_seed(10)
    return AutoencoderKL(block_out_channels=[8], in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"],
                         up_block_types=["UpDecoderBlock2D"], latent_channels=latent_channels, norm_num_groups=4,
                         sample_size=8, **extra).eval()


def pixel_unet(seed=0):
    """An unconditional 2-channel 8x8 UNet2DModel."""
    from diffusers import UNet2DModel
    torch.manual_seed(seed)
    return UNet2DModel(sample_size=8, in_channels=2, out_channels=2, layers_per_block=1, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4).eval()


def unet(cross_attention_dim=8, **extra):
    from diffusers import UNet2DConditionModel
    torch.manual_seed(11)
    return UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(8, 16), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                cross_attention_dim=cross_attention_dim, attention_head_dim=2, norm_num_groups=4,
                                **extra).eval()


def stable_diffusion(tmp, scheduler):
    from diffusers import StableDiffusionPipeline
    tok = clip_tokenizer(tmp)
    return StableDiffusionPipeline(vae=vae(), text_encoder=clip_text(tok), tokenizer=tok, unet=unet(),
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def stable_diffusion_xl(tmp, scheduler):
    from diffusers import StableDiffusionXLPipeline
    tok = clip_tokenizer(tmp)
    net = unet(cross_attention_dim=16, addition_embed_type="text_time", addition_time_embed_dim=4,
               projection_class_embeddings_input_dim=6 * 4 + 8)
    return StableDiffusionXLPipeline(vae=vae(), text_encoder=clip_text(tok), text_encoder_2=clip_text(tok, True, 1),
                                     tokenizer=tok, tokenizer_2=tok, unet=net, scheduler=scheduler)


def stable_diffusion_3(tmp, scheduler):
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline
    tok = clip_tokenizer(tmp)
    torch.manual_seed(12)
    transformer = SD3Transformer2DModel(sample_size=8, patch_size=1, in_channels=4, num_layers=1, attention_head_dim=4,
                                        num_attention_heads=2, caption_projection_dim=8, joint_attention_dim=16,
                                        pooled_projection_dim=16, out_channels=4).eval()
    return StableDiffusion3Pipeline(transformer=transformer, scheduler=scheduler,
                                    vae=vae(shift_factor=0.06, scaling_factor=1.5),
                                    text_encoder=clip_text(tok, True, 2), tokenizer=tok,
                                    text_encoder_2=clip_text(tok, True, 3), tokenizer_2=tok,
                                    text_encoder_3=None, tokenizer_3=None)


def flux(tmp, scheduler):
    from diffusers import FluxPipeline, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel
    tok, tok2 = clip_tokenizer(tmp), t5_tokenizer()
    torch.manual_seed(13)
    t5 = T5EncoderModel(T5Config(vocab_size=len(tok2), d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2)).eval()
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=8, num_layers=1, num_single_layers=1,
                                         attention_head_dim=8, num_attention_heads=2, joint_attention_dim=8,
                                         pooled_projection_dim=8, axes_dims_rope=[2, 2, 4]).eval()
    return FluxPipeline(scheduler=scheduler, vae=vae(2, shift_factor=0.1, scaling_factor=0.5),
                        text_encoder=clip_text(tok, seed=4), tokenizer=tok, text_encoder_2=t5, tokenizer_2=tok2,
                        transformer=transformer)

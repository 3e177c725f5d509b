"""Model loading: pretrained DiT-XL/2, random-weight presets, testbed checkpoints (§3–4).

Every loader returns a frozen :class:`DiTBundle` so the samplers and protocols never care where
a model came from. A bundle is placed on its device and dtype once, when it is built (the ``device``
and ``dtype`` of every loader), and never moved afterwards: the protocols read ``bundle.device`` and
``bundle.dtype``. Nothing here downloads: pretrained weights are read from a local directory or the
Hugging Face cache with ``local_files_only=True``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DiTTransformer2DModel
from diffusers.utils import logging as diffusers_logging

logger = logging.getLogger(__name__)

PRETRAINED_ID = "facebook/DiT-XL-2-256"
SHIPPED_DIR = Path(__file__).resolve().parent / "checkpoints"
SHIPPED_DEFAULT = "mixture"

# The DDPM noise schedule DiT was trained with (Peebles & Xie 2023, §3: linear betas 1e-4 -> 0.02,
# T = 1000; the hub's scheduler/scheduler_config.json). Used when a model directory has no
# scheduler config. clip_sample False: DiT latents are not bounded to [-1, 1].
DIT_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 1e-4,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "clip_sample": False,
    "set_alpha_to_one": True,
    "steps_offset": 0,
    "prediction_type": "epsilon",
}

# diffusers' DiTPipeline default guidance scale (pipeline_dit.py, guidance_scale=4.0).
DIT_GUIDANCE_SCALE = 4.0

# Architecture presets for DiTTransformer2DModel. `init_std` is the std of the seeded normal
# re-initialization used by build_random_dit (see there for why a fresh DiT needs one).
PRESETS: dict[str, dict[str, Any]] = {
    # DiT-XL/2 (Peebles & Xie 2023, Table 1; the hub's transformer/config.json): 28 layers,
    # 16 heads x 72 = hidden 1152, patch 2, 4 latent channels in, 8 out (learned sigma),
    # 32x32 latents = 256 px / VAE factor 8, 1000 ImageNet classes.
    "XL_2": dict(
        num_layers=28,
        num_attention_heads=16,
        attention_head_dim=72,
        in_channels=4,
        out_channels=8,
        sample_size=32,
        patch_size=2,
        num_embeds_ada_norm=1000,
        init_std=0.02,
    ),
    # DiT-S/2-like width on 16x16 pixel images: a CPU-benchmark size (DiT paper Table 1 "S": 12 layers,
    # hidden 384, 6 heads; depth reduced to 4 to keep the CPU smoke run short).
    "small": dict(
        num_layers=4,
        num_attention_heads=6,
        attention_head_dim=64,
        in_channels=1,
        out_channels=2,
        sample_size=16,
        patch_size=2,
        num_embeds_ada_norm=10,
        init_std=0.02,
    ),
    # Unit-test size: 2 layers, 2 heads x 8, one 8x8 pixel channel (+1 learned-sigma channel so the
    # sigma-dropping path is exercised), 3 classes. Larger init_std so attention is far from uniform.
    "tiny": dict(
        num_layers=2,
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=1,
        out_channels=2,
        sample_size=8,
        patch_size=2,
        num_embeds_ada_norm=3,
        init_std=0.2,
    ),
}


class ModelNotFoundError(FileNotFoundError):
    """Raised when model weights are not available locally (we never download)."""


@dataclass(frozen=True)
class DiTBundle:
    """Everything a sampler needs to run one DiT.

    ``latent_channels`` are the channels the sampler integrates (the first ``latent_channels`` of
    the transformer output are ε̂; the rest are learned-sigma channels and are dropped).
    ``vae`` is None for pixel-space models and for random-weight bundles (images = latents then).
    """

    name: str
    transformer: DiTTransformer2DModel
    vae: AutoencoderKL | None
    scheduler_config: dict[str, Any]
    latent_channels: int
    sample_size: int
    num_classes: int
    null_class: int
    guidance_scale: float
    encoder: str
    pixel_space: bool

    @property
    def num_layers(self) -> int:
        return len(self.transformer.transformer_blocks)

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.transformer.parameters()).dtype

    @property
    def image_size(self) -> int:
        """Side of the decoded image: latent side × the VAE's downsampling factor (from its config)."""
        if self.vae is None:
            return self.sample_size
        return self.sample_size * 2 ** (len(self.vae.config.block_out_channels) - 1)


def _hf_cache_dir() -> str:
    """The hub cache directory, read from the environment at call time (HF_HUB_CACHE > HF_HOME)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return os.path.join(home, "hub")


def _missing_message(path_or_id: str, cache_dir: str, exc: Exception) -> str:
    where = f"directory {path_or_id}" if os.path.isdir(path_or_id) else f"the Hugging Face cache {cache_dir}"
    cause = str(exc).splitlines()[0] if str(exc) else ""
    return (
        f"DiT weights for {path_or_id!r} not found locally (searched {where}; {type(exc).__name__}: {cause}) "
        "synchrogap never downloads. Supply them by one of: (1) a local diffusers directory with "
        "transformer/ and vae/ subfolders: --model /path/to/DiT-XL-2-256; (2) on a machine with network run "
        f"`huggingface-cli download {PRETRAINED_ID}` and copy ~/.cache/huggingface here; "
        "(3) point HF_HOME (or HF_HUB_CACHE) at a cache that holds it. HF_HUB_OFFLINE=1 is honoured."
    )


def load_pretrained_dit(
    path_or_id: str = PRETRAINED_ID,
    dtype: torch.dtype = torch.float32,
    with_vae: bool = True,
    device: str | torch.device = "cpu",
) -> DiTBundle:
    """Load DiT-XL/2 (transformer + VAE + scheduler config) the way diffusers' DiTPipeline assembles it.

    ``path_or_id`` is a local directory or a hub id resolved in the local cache only.
    Raises :class:`ModelNotFoundError` naming what is missing and how to supply it.
    """
    from diffusers import DDIMScheduler

    cache_dir = _hf_cache_dir()
    # low_cpu_mem_usage=False: the default needs `accelerate` and warns on every load without it
    kw: dict[str, Any] = dict(local_files_only=True, cache_dir=cache_dir, low_cpu_mem_usage=False)
    try:
        transformer = DiTTransformer2DModel.from_pretrained(
            path_or_id, subfolder="transformer", torch_dtype=dtype, **kw
        )
        vae = (
            AutoencoderKL.from_pretrained(path_or_id, subfolder="vae", torch_dtype=dtype, **kw)
            if with_vae
            else None
        )
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(_missing_message(path_or_id, cache_dir, exc)) from exc
    try:
        sched = dict(DDIMScheduler.load_config(path_or_id, subfolder="scheduler", **kw))
        sched = {k: v for k, v in sched.items() if not k.startswith("_")}
    except (OSError, ValueError):
        logger.info("no scheduler config next to %s; using DiT's training schedule", path_or_id)
        sched = dict(DIT_SCHEDULER_CONFIG)
    sched["clip_sample"] = False  # DiT latents are unbounded; DiT's own config says so too
    transformer = place_module(transformer, device, dtype)
    if vae is not None:
        vae = place_module(vae, device, dtype)
    n_cls = int(transformer.config.num_embeds_ada_norm)
    return DiTBundle(
        name=str(path_or_id),
        transformer=transformer,
        vae=vae,
        scheduler_config=sched,
        latent_channels=int(transformer.config.in_channels),
        sample_size=int(transformer.config.sample_size),
        num_classes=n_cls,
        null_class=n_cls,
        guidance_scale=DIT_GUIDANCE_SCALE,
        encoder="resnet50",
        pixel_space=False,
    )


def place_module(module: torch.nn.Module, device: str | torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """The one place a model is put on its device and dtype (in eval mode, no gradients)."""
    prev = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # silence a float32-module notice that does not apply to DiT
    try:
        return module.to(device=device, dtype=dtype).eval().requires_grad_(False)
    finally:
        diffusers_logging.set_verbosity(prev)


def float64_copy(bundle: DiTBundle) -> DiTBundle:
    """A float64 copy of the bundle's transformer on the same device (for derivatives); no VAE."""
    import copy

    return replace(
        bundle,
        transformer=place_module(copy.deepcopy(bundle.transformer), bundle.device, torch.float64),
        vae=None,
    )


def reinit_weights(model: torch.nn.Module, seed: int, std: float) -> None:
    """Seeded N(0, std²) re-initialization of every parameter.

    diffusers initializes DiT adaLN-zero style: the adaLN modulation and final projection are
    zero, so every gate α_ℓ, β_ℓ of eq. (13)–(14) is 0 and a fresh DiT is the identity on the
    residual stream (and outputs zeros). Random-weight tests and benchmarks would then measure
    nothing, so every parameter is redrawn from one seeded CPU generator (device-independent).
    """
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64).mul_(std).to(p.dtype))


def build_random_dit(
    preset: str = "tiny",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> DiTBundle:
    """A DiT with a preset architecture (:data:`PRESETS`) and seeded random weights (no VAE)."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    cfg = dict(PRESETS[preset])
    std = cfg.pop("init_std")
    transformer = DiTTransformer2DModel(**cfg)
    reinit_weights(transformer, seed, std)
    transformer = place_module(transformer, device, dtype)
    n_cls = int(cfg["num_embeds_ada_norm"])
    return DiTBundle(
        name=f"random:{preset}",
        transformer=transformer,
        vae=None,
        scheduler_config=dict(DIT_SCHEDULER_CONFIG),
        latent_channels=int(cfg["in_channels"]),
        sample_size=int(cfg["sample_size"]),
        num_classes=n_cls,
        null_class=n_cls,
        guidance_scale=1.0,
        encoder="pixels",
        pixel_space=True,
    )


def load_checkpoint(
    path: str | os.PathLike, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> DiTBundle:
    """Load a testbed checkpoint: diffusers ``save_pretrained`` output plus ``synchrogap.json``."""
    path = Path(path)
    meta_file = path / "synchrogap.json"
    if not meta_file.is_file():
        raise ModelNotFoundError(
            f"checkpoint directory {str(path)!r} has no synchrogap.json (expected a testbed checkpoint: "
            "config.json, diffusion_pytorch_model.safetensors, synchrogap.json)"
        )
    meta = json.loads(meta_file.read_text())
    try:
        transformer = DiTTransformer2DModel.from_pretrained(
            path, torch_dtype=dtype, local_files_only=True, low_cpu_mem_usage=False
        )
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"cannot load transformer weights from {str(path)!r}: {exc}") from exc
    transformer = place_module(transformer, device, dtype)
    sched = dict(DIT_SCHEDULER_CONFIG)
    sched.update({k: v for k, v in meta.get("scheduler", {}).items() if not k.startswith("_")})
    n_cls = int(meta.get("num_classes", transformer.config.num_embeds_ada_norm))
    shipped = path.resolve().parent == SHIPPED_DIR.resolve()
    return DiTBundle(
        name=path.name if shipped else str(path),  # shipped checkpoints go by their short name in results
        transformer=transformer,
        vae=None,
        scheduler_config=sched,
        latent_channels=int(meta.get("channels", transformer.config.in_channels)),
        sample_size=int(transformer.config.sample_size),
        num_classes=n_cls,
        null_class=int(meta.get("null_class", n_cls)),
        guidance_scale=float(meta.get("guidance_scale", 1.0)),
        encoder=str(meta.get("encoder", "pixels")),
        pixel_space=bool(meta.get("pixel_space", True)),
    )


def shipped_checkpoints() -> list[str]:
    """Names of the checkpoints shipped in ``dit_validation/checkpoints/``."""
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / "synchrogap.json").is_file())


def model_choices() -> list[str]:
    return [
        "shipped-default",
        *shipped_checkpoints(),
        PRETRAINED_ID,
        *(f"random:{p}" for p in PRESETS),
        "<path>",
    ]


def resolve_model(
    name: str, dtype: torch.dtype = torch.float32, seed: int = 0, device: str | torch.device = "cpu"
) -> DiTBundle:
    """Resolve a CLI model name: ``shipped-default``, a shipped name, a path, the hub id, ``random:<p>``.

    The bundle is placed on ``device``/``dtype`` here, once. Unknown names raise ``ValueError`` listing
    the choices; a path that does not exist raises :class:`ModelNotFoundError` naming it.
    """
    if name == "shipped-default":
        if SHIPPED_DEFAULT not in shipped_checkpoints():
            raise ModelNotFoundError(
                f"the shipped default checkpoint {str(SHIPPED_DIR / SHIPPED_DEFAULT)!r} is absent; "
                "train it with "
                "`synchrogap train` or pass --model random:tiny / a checkpoint path"
            )
        return load_checkpoint(SHIPPED_DIR / SHIPPED_DEFAULT, dtype, device)
    if name in shipped_checkpoints():
        return load_checkpoint(SHIPPED_DIR / name, dtype, device)
    if name.startswith("random:"):
        preset = name.split(":", 1)[1]
        if preset not in PRESETS:
            raise ValueError(f"unknown model {name!r}; choose one of {model_choices()}")
        return build_random_dit(preset, seed=seed, dtype=dtype, device=device)
    if os.path.isdir(name):
        if (Path(name) / "synchrogap.json").is_file():
            return load_checkpoint(name, dtype, device)
        return load_pretrained_dit(name, dtype, device=device)
    if name == PRETRAINED_ID:
        return load_pretrained_dit(name, dtype, device=device)
    if os.sep in name or name.startswith("."):
        raise ModelNotFoundError(f"--model {name!r}: no such directory (a model path must be a directory)")
    raise ValueError(f"unknown model {name!r}; choose one of {model_choices()}")

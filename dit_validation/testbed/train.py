"""Train the testbed's small class-conditional DiTs (`synchrogap train`).

A diffusers `DiTTransformer2DModel` in pixel space (1×16×16, patch 2 → 64 tokens, adaLN-zero), trained with
ε-prediction on DiT's DDPM schedule (linear β 1e-4 … 0.02, 1000 steps), 10% class dropout to the null class
(so classifier-free guidance is possible; the testbed samples with guidance scale 1, i.e. plain conditional),
AdamW, an EMA of the weights (the EMA is what is saved), bf16 autocast on CUDA. Every random draw comes from a
generator seeded by `TrainConfig.seed`.

Output directory: diffusers `save_pretrained` files (`config.json`, `diffusion_pytorch_model.safetensors`,
fp32), `synchrogap.json` (what `dit_validation.models.load_checkpoint` needs) and `training_record.json`
(command, seed, wall time, subsampled loss curve, held-out denoising loss of the model and of reference
denoisers: ε̂ = 0, the best Gaussian/linear denoiser and, for the mixture, the exact Bayes denoiser; and the
branch-validity gate of every branch direction from the model's own samples).
"""

from __future__ import annotations

import copy
import errno
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from theory.multiscale import DEFAULT_MIXTURE, mixture_eps, patterns
from theory.schedules import DDPMSchedule
from theory.validation import check_positive_int, check_range

from .._logging import progress as progress_bar
from ..boundary import units
from .data import CHANNELS, IMAGE_SIZE, DatasetName, TrainStream, digits_split, held_out_set, num_classes

log = logging.getLogger(__name__)

#: What :func:`train` may add to a training record: ``extras(checkpoint_dir) -> {key: JSON value}``.
RecordExtras = Callable[[Path], dict]

#: diffusers DDPMScheduler config of DiT (Peebles & Xie 2023: linear β, 1000 steps, ε-prediction).
DDPM_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
}
#: Held-out evaluation: timesteps, image count and noise seed are fixed so the metric is reproducible.
EVAL_TIMESTEPS = tuple(range(50, 1000, 100))  # 10 timesteps across the schedule
EVAL_N = 128
EVAL_SEED = 1234
ENCODER_OF = {"mixture": "mixture-factors", "digits": "digits-cnn"}


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters; defaults train a usable model in well under an hour on one CPU core."""

    dataset: DatasetName = "mixture"
    steps: int = 4000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    class_dropout: float = 0.1
    num_layers: int = 4
    num_heads: int = 4
    head_dim: int = 24  # hidden size 96
    seed: int = 0
    device: str = "cpu"
    log_every: int = 50
    #: "constant" after the warm-up, or "cosine": decays to `lr_final_frac`·lr at the last step
    lr_schedule: str = "constant"
    lr_final_frac: float = 0.1
    threads: int = 1  # CPU threads for torch (ignored on CUDA)
    #: Timestep sampling: with probability ``t_focus`` a batch element's t is drawn uniformly from
    #: [0, ``t_focus_max``), else from all 1000 training steps. The network is conditioned on t, so the per-t
    #: Bayes optimum (what the ε-loss estimates) is unchanged; only how many updates each t gets moves. The
    #: testbed's local factors decide at small t (checker ≈ 290, 4×4 blocks ≈ 414 of 999), where uniform
    #: sampling gives their branches a fifth of the loss weight of the global ones.
    t_focus: float = 0.0
    t_focus_max: int = 400
    #: A checkpoint directory to start from (fine-tuning); "" starts from DiT's initialization.
    init: str = ""

    def validate(self) -> None:
        """Every option in its range (a message naming it), checked before anything is written."""
        check_positive_int("steps", self.steps)
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("num_layers", self.num_layers)
        check_positive_int("threads", self.threads)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        check_range("lr", self.lr, 0.0, None, lo_open=True)
        check_range("ema_decay", self.ema_decay, 0.0, 1.0, hi_open=True)
        check_range("class_dropout", self.class_dropout, 0.0, 1.0, hi_open=True)
        check_range("lr_final_frac", self.lr_final_frac, 0.0, 1.0)
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        check_range("t_focus", self.t_focus, 0.0, 1.0)
        check_range("t_focus_max", self.t_focus_max, 1, 1000)
        if self.init and not (Path(self.init) / "config.json").is_file():
            raise ValueError(f"init must be a checkpoint directory holding config.json, got {self.init!r}")
        if self.dataset not in ("mixture", "digits"):
            raise ValueError(f"dataset must be 'mixture' or 'digits', got {self.dataset!r}")


def command_line(cfg: TrainConfig, out: str | Path) -> str:
    """The ``synchrogap train`` command that reproduces ``cfg`` (recorded in training_record.json)."""
    return (
        f"synchrogap train --dataset {cfg.dataset} --steps {cfg.steps} --batch-size {cfg.batch_size} "
        f"--seed {cfg.seed} --device {cfg.device} --layers {cfg.num_layers} --lr {cfg.lr:g} "
        f"--lr-schedule {cfg.lr_schedule} --threads {cfg.threads}"
        + (f" --t-focus {cfg.t_focus:g}:{cfg.t_focus_max}" if cfg.t_focus > 0 else "")
        + (f" --init {cfg.init}" if cfg.init else "")
        + f" --out {out}"
    )


def build_testbed_dit(dataset: DatasetName, cfg: TrainConfig, seed: int | None = None):
    """Fresh DiT for the testbed (adaLN-zero gates start at zero, as in DiT)."""
    from diffusers import DiTTransformer2DModel

    torch.manual_seed(cfg.seed if seed is None else seed)
    return DiTTransformer2DModel(
        num_attention_heads=cfg.num_heads,
        attention_head_dim=cfg.head_dim,
        in_channels=CHANNELS,
        out_channels=CHANNELS,  # ε only (no learned Σ)
        num_layers=cfg.num_layers,
        sample_size=IMAGE_SIZE,
        patch_size=2,
        num_embeds_ada_norm=num_classes(dataset),
        norm_type="ada_norm_zero",
    )


def lr_factor(cfg: TrainConfig, k: int) -> float:
    """Learning-rate multiplier at optimizer step k: 200-step linear warm-up, then constant or cosine."""
    warm = min(1.0, (k + 1) / 200)
    if cfg.lr_schedule == "constant":
        return warm
    frac = min(1.0, k / max(1, cfg.steps - 1))
    return warm * (cfg.lr_final_frac + (1 - cfg.lr_final_frac) * 0.5 * (1 + np.cos(np.pi * frac)))


def draw_timesteps(cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Training timesteps (batch,): uniform on 0 … 999, or with probability ``t_focus`` uniform below
    ``t_focus_max`` (see :class:`TrainConfig`). ``t_focus = 0`` gives exactly the uniform draws."""
    t = torch.randint(0, 1000, (cfg.batch_size,), generator=gen)
    if cfg.t_focus == 0:
        return t
    low = torch.randint(0, cfg.t_focus_max, (cfg.batch_size,), generator=gen)
    return torch.where(torch.rand(cfg.batch_size, generator=gen) < cfg.t_focus, low, t)


def _noised(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    a = ab[t].sqrt().view(-1, 1, 1, 1).to(x0.dtype)
    s = (1 - ab[t]).sqrt().view(-1, 1, 1, 1).to(x0.dtype)
    return a * x0 + s * eps  # DDPM forward, x_t = α_t x_0 + σ_t ε


def _eval_batch(dataset: DatasetName) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fixed (x0, labels, t, eps) for the held-out metric, each with leading dim T·N."""
    held = held_out_set(dataset, EVAL_N)
    gen = torch.Generator().manual_seed(EVAL_SEED)
    T = len(EVAL_TIMESTEPS)
    eps = torch.randn((T * EVAL_N, CHANNELS, IMAGE_SIZE, IMAGE_SIZE), generator=gen)
    t = torch.tensor(EVAL_TIMESTEPS, dtype=torch.int64).repeat_interleave(EVAL_N)
    return held.x.repeat(T, 1, 1, 1), held.labels.repeat(T), t, eps


@torch.no_grad()
def held_out_loss(transformer, dataset: DatasetName, batch: int = 256) -> np.ndarray:
    """Per-timestep held-out ε-MSE of `transformer` (float32, deterministic on CPU), shape (T_eval,)."""
    x0, labels, t, eps = _eval_batch(dataset)
    ab = torch.tensor(DDPMSchedule().alphas_cumprod, dtype=torch.float64)
    xt = _noised(x0, t, eps, ab)
    dev = next(transformer.parameters()).device
    dt = next(transformer.parameters()).dtype
    errs = []
    for i in range(0, xt.shape[0], batch):
        out = transformer(
            xt[i : i + batch].to(dev, dt),
            timestep=t[i : i + batch].to(dev),
            class_labels=labels[i : i + batch].to(dev),
        ).sample
        errs.append(((out.float().cpu() - eps[i : i + batch]) ** 2).mean(dim=(1, 2, 3)))
    return torch.cat(errs).view(len(EVAL_TIMESTEPS), EVAL_N).mean(dim=1).double().numpy()


def reference_losses(dataset: DatasetName) -> dict[str, list[float]]:
    """Held-out ε-MSE per timestep of reference denoisers on the same fixed batch.

    zero: ε̂ = 0. gaussian: the best denoiser for a Gaussian with the training data's mean μ and covariance Σ,
    ε̂ = σ (α² Σ + σ² I)⁻¹ (x_t − α μ) — the optimal linear (affine) denoiser. exact (mixture only): the Bayes
    denoiser −σ ∇ log p_t from the closed-form score, the floor no network can beat in expectation.
    """
    x0, _, t, eps = _eval_batch(dataset)
    ab_all = DDPMSchedule().alphas_cumprod
    xt = _noised(x0.double(), t, eps.double(), torch.tensor(ab_all)).reshape(len(t), -1).numpy()
    e = eps.double().reshape(len(t), -1).numpy()
    if dataset == "digits":
        train = digits_split()[0].x.double().reshape(-1, IMAGE_SIZE * IMAGE_SIZE).numpy()
        mu, cov = train.mean(0), np.cov(train, rowvar=False)
    else:
        phi = patterns(DEFAULT_MIXTURE)
        mu = np.zeros(phi.shape[1])
        amp2 = np.square(DEFAULT_MIXTURE.amplitudes)
        cov = phi.T @ np.diag(amp2) @ phi + DEFAULT_MIXTURE.s**2 * np.eye(phi.shape[1])
    out: dict[str, list[float]] = {"zero": [], "gaussian": [], "exact": []}
    for k, tk in enumerate(EVAL_TIMESTEPS):
        rows = slice(k * EVAL_N, (k + 1) * EVAL_N)
        ab = ab_all[tk]
        a, s = np.sqrt(ab), np.sqrt(1 - ab)
        out["zero"].append(float(np.mean(e[rows] ** 2)))
        gain = s * np.linalg.inv(ab * cov + (1 - ab) * np.eye(cov.shape[0]))
        out["gaussian"].append(float(np.mean(((xt[rows] - a * mu) @ gain.T - e[rows]) ** 2)))
        if dataset == "mixture":
            shaped = xt[rows].reshape(-1, CHANNELS, IMAGE_SIZE, IMAGE_SIZE)
            pred = mixture_eps(DEFAULT_MIXTURE, shaped, ab).reshape(EVAL_N, -1)
            out["exact"].append(float(np.mean((pred - e[rows]) ** 2)))
    if dataset != "mixture":
        del out["exact"]
    return out


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    command: str = "",
    overwrite: bool = False,
    progress: bool = False,
    extras: RecordExtras | None = None,
) -> dict:
    """Train, save the EMA model to `out_dir`, and return the training record.

    ``extras(path)``: entries added to the record, measured on the saved (not yet renamed) checkpoint —
    ``synchrogap train`` passes the branch-validity gate (:func:`dit_validation.branches.checkpoint_gate`).

    Nothing is written until training has finished: the checkpoint is assembled in a temporary sibling
    directory and renamed into place, so an interrupted run leaves no half checkpoint (and no directory that
    a re-run would refuse). An existing ``out_dir`` is refused unless ``overwrite``.
    """
    cfg.validate()
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(
            errno.EEXIST,
            "refusing to overwrite a checkpoint (pass --overwrite, or choose another --out)",
            str(out_dir),
        )
    if cfg.device == "cpu":
        torch.set_num_threads(cfg.threads)
    dev = torch.device(cfg.device)
    if cfg.init:
        from diffusers import DiTTransformer2DModel

        model = DiTTransformer2DModel.from_pretrained(cfg.init, local_files_only=True).float().to(dev)
    else:
        model = build_testbed_dit(cfg.dataset, cfg).to(dev)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    # The DiT's only train-mode behaviour is LabelEmbedding's own random label drop; we drop labels ourselves
    # with the seeded generator below, so the module stays in eval mode.
    model.eval()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: lr_factor(cfg, k))
    ab = torch.tensor(DDPMSchedule().alphas_cumprod, dtype=torch.float32, device=dev)
    stream = TrainStream(cfg.dataset, cfg.batch_size, cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    n_cls = num_classes(cfg.dataset)
    curve: list[tuple[int, float]] = []
    running, start = 0.0, time.time()
    units.plan(cfg.steps)
    units.resumable = False  # a killed training run starts over
    for step in progress_bar(range(cfg.steps), desc="train", enabled=progress):
        batch = stream.next()
        t = draw_timesteps(cfg, gen)
        eps = torch.randn(batch.x.shape, generator=gen)
        drop = torch.rand(cfg.batch_size, generator=gen) < cfg.class_dropout
        labels = torch.where(drop, torch.full_like(batch.labels, n_cls), batch.labels)  # null class = n
        x0, t, eps, labels = batch.x.to(dev), t.to(dev), eps.to(dev), labels.to(dev)
        xt = _noised(x0, t, eps, ab)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            pred = model(xt, timestep=t, class_labels=labels).sample
        loss = torch.mean((pred.float() - eps) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))  # EMA warm-up
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                pe.lerp_(pm, 1 - decay)
        running += float(loss.detach())
        if (step + 1) % cfg.log_every == 0:
            curve.append((step + 1, running / cfg.log_every))
            log.info("step %d loss %.4f (%.1fs)", step + 1, running / cfg.log_every, time.time() - start)
            running = 0.0
        units.advance()
    wall = time.time() - start
    ema = ema.float().cpu()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        record = _save(ema, cfg, tmp, command, wall, curve, dev, extras)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700: the checkpoint follows the umask
        old = None
        if out_dir.exists():  # overwrite: the old checkpoint goes only once the new one is complete
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info(
        "held-out loss %.4f vs references %s", record["held_out_loss_mean"], record["reference_losses_mean"]
    )
    return record


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _init_chain(init: str) -> list[str]:
    """The commands that made the checkpoint a fine-tune starts from, oldest first (its own training record
    and the chain recorded in it), so a fine-tuned checkpoint's record says how to rebuild it from scratch."""
    if not init:
        return []
    try:
        rec = json.loads((Path(init) / "training_record.json").read_text())
    except (OSError, ValueError):
        return [f"(no training record in {init})"]
    chain = rec.get("init_chain") or ([rec["init_command"]] if rec.get("init_command") else [])
    return [*chain, str(rec.get("command", f"(no command in {init})"))]


def _save(
    ema,
    cfg: TrainConfig,
    out_dir: Path,
    command: str,
    wall: float,
    curve: list,
    dev,
    extras: RecordExtras | None = None,
) -> dict:
    """Write the EMA model, ``synchrogap.json`` and ``training_record.json`` into ``out_dir``."""
    n_cls = num_classes(cfg.dataset)
    ema.save_pretrained(out_dir, safe_serialization=True)
    meta = {
        "dataset": cfg.dataset,
        "pixel_space": True,
        "image_size": IMAGE_SIZE,
        "channels": CHANNELS,
        "num_classes": n_cls,
        "null_class": n_cls,
        # guidance 1.0 = the plain conditional model; CFG is possible (null class trained) but unused.
        "guidance_scale": 1.0,
        "encoder": ENCODER_OF[cfg.dataset],
        "scheduler": DDPM_CONFIG,
    }
    (out_dir / "synchrogap.json").write_text(json.dumps(meta, indent=2))
    held = held_out_loss(ema, cfg.dataset)
    refs = reference_losses(cfg.dataset)
    record = {
        "command": command,
        "config": asdict(cfg),
        "seed": cfg.seed,
        "steps": cfg.steps,
        "wall_time_s": wall,
        "device": str(dev),
        "num_parameters": int(sum(p.numel() for p in ema.parameters())),
        "init_chain": _init_chain(cfg.init),
        "loss_curve": curve[:: max(1, len(curve) // 100)],
        "eval": {"timesteps": list(EVAL_TIMESTEPS), "n": EVAL_N, "noise_seed": EVAL_SEED, "dtype": "float32"},
        "held_out_loss": held.tolist(),
        "held_out_loss_mean": float(held.mean()),
        "reference_losses": refs,
        "reference_losses_mean": {k: float(np.mean(v)) for k, v in refs.items()},
    }
    if extras is not None:  # e.g. the branch-validity gate, measured by a higher layer on the saved model
        record.update(extras(out_dir))
    (out_dir / "training_record.json").write_text(json.dumps(record, indent=2))
    return record

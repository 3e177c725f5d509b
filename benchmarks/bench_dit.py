"""Throughput of the plain DiT vs the replica-coupled sampler, Protocol II capture overhead, peak memory.

    python benchmarks/bench_dit.py --device cuda --preset XL_2 --batch 256 --compile --cuda-graphs
    python benchmarks/bench_dit.py --device cpu --preset small --batch 16 --threads 1    # CPU run

Reports image-forwards/s (one image through the transformer = 1), every variant alternated round by
round (``--rounds``, ≥ 3; min and median of the rounds; benchmarks/_timing.py), for
  (a) the plain diffusers DiT forward (stock attention processors);
  (b) the same batch with coupled processors installed, every pair at g = 0.5 (two SDPA calls per layer);
  (c) the same with Protocol I's row mix: 27 % of the pairs coupled (the trunk), 73 % at g = 0 (the
      decoupled branches) — the inter-replica call runs on the coupled rows only;
  (d) our full coupled sampler step (guidance-doubled batch, per-pair g, DDIM update, keyed noise);
  (e) the sampler step with the Protocol II capture hooks projecting onto a K = 32 float64 basis;
optionally torch.compile'd and CUDA-graph rows; the peak GPU memory of (d) and (e); the wall clock of the
paper's Protocol I grid with prefix sharing; and the targets of issue 13 (on a GPU): coupled sampler ≥ 0.9×
the eager plain forward, compiled coupled ≥ 2× it, capture overhead ≤ 5 %.
Random weights (re-initialized, ``models.reinit_weights``; the XL/2 preset has the pretrained model's
FLOPs); numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import alternate, tmed, tmin  # noqa: E402

from dit_validation.capture import DifferenceCapture, ModeProjector  # noqa: E402
from dit_validation.coupling import install_coupling  # noqa: E402
from dit_validation.models import build_random_dit  # noqa: E402
from dit_validation.sampler import (  # noqa: E402
    _ddim,
    _step_noise,
    branched_row_steps,
    make_scheduler,
    predict_eps,
)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def synced(fn: Callable[[], object], device: torch.device) -> Callable[[], object]:
    """``fn`` followed by a device synchronization, so wall times include the GPU work."""

    def run() -> object:
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out

    return run


def cuda_graphed(fn: Callable[[], torch.Tensor], device: torch.device) -> Callable[[], torch.Tensor]:
    """Capture ``fn`` (no host work inside) into a CUDA graph; replays return the static output."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(2):
            fn()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()

    def replay() -> torch.Tensor:
        graph.replay()
        return out

    return replay


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--preset", default=None, help="XL_2 (default on CUDA), small (default on CPU), tiny")
    ap.add_argument("--batch", type=int, default=None, help="images per forward (multiple of 4)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="bfloat16 on CUDA, float32 on CPU")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd forwards")
    ap.add_argument("--cuda-graphs", action="store_true", help="also time CUDA-graph replays (CUDA only)")
    ap.add_argument("--rounds", type=int, default=5, help="alternated rounds per variant (>= 3)")
    ap.add_argument("--iters", type=int, default=3, help="calls per timed round")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args(argv)
    if args.rounds < 3:
        ap.error(f"--rounds must be an integer >= 3, got {args.rounds}")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    preset = args.preset or ("XL_2" if cuda else "small")
    B = args.batch or (256 if cuda else 16)
    if B % 4:
        ap.error(f"--batch must be a multiple of 4 (pairs x guidance), got {B}")
    dtype = DTYPES[args.dtype or ("bfloat16" if cuda else "float32")]
    torch.backends.cuda.matmul.allow_tf32 = True
    bundle = build_random_dit(preset, seed=0, dtype=dtype, device=device)  # placed once
    dit = bundle.transformer
    C, H = bundle.latent_channels, bundle.sample_size
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(B, C, H, H, generator=gen).to(device, dtype)
    t = torch.full((B,), 500, device=device)
    y = torch.randint(0, bundle.num_classes, (B,), generator=gen).to(device)
    print(
        f"device={device} ({torch.cuda.get_device_name(device) if cuda else 'CPU'}) "
        f"preset={preset} batch={B} "
        f"dtype={dtype} torch={torch.__version__} threads={args.threads} rounds={args.rounds}x{args.iters}"
    )

    def fwd() -> torch.Tensor:
        with torch.no_grad():
            return dit(x, timestep=t, class_labels=y).sample

    handle = install_coupling(dit, g=0.0)
    row_g = {
        "plain": None,
        "coupled forward (all g = 0.5)": np.full(B, 0.5),
        "coupled forward (Protocol I mix)": np.tile(np.where(np.arange(B // 2) % 4 == 0, 0.5, 0.0), 2),
    }
    P = B // 4
    sched = make_scheduler(bundle, 100)
    z = torch.randn(2 * P, C, H, H, generator=gen).to(device, torch.float32)
    seeds = list(range(P))

    def sampler_step() -> torch.Tensor:
        eps = predict_eps(bundle, handle, z, 499, np.full(P, 0.5), 0, 4.0)
        nA, nB = _step_noise(seeds, 3, (C, H, H), shared=False)
        return _ddim(sched, eps, 499, z, 1.0, torch.cat([nA, nB]).to(device, torch.float32))

    def with_g(g: np.ndarray | None) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            handle.set_g(0.0 if g is None else g)
            return fwd()

        return run

    K = 32
    D = (H // dit.config.patch_size) ** 2 * dit.inner_dim
    projector = ModeProjector(
        [torch.randn(K, D, dtype=torch.float64, device=device) for _ in range(bundle.num_layers)], 1, P
    )

    def captured_step() -> torch.Tensor:
        with DifferenceCapture(dit, range(bundle.num_layers), True, projector.into(range(P))):
            return sampler_step()

    jobs: dict[str, Callable[[], object]] = {name: with_g(g) for name, g in row_g.items()}
    jobs["coupled sampler step"] = sampler_step
    jobs["sampler step + P-II capture"] = captured_step
    if args.compile:
        handle.set_g(0.5)
        fwd()  # create the coupling's g buffers eagerly, so the compiled graph has no break for them
        compiled = torch.compile(dit)

        def cfwd() -> torch.Tensor:
            with torch.no_grad():
                return compiled(x, timestep=t, class_labels=y).sample

        jobs["coupled compiled"] = cfwd
    if args.cuda_graphs:
        if not cuda:
            print("--cuda-graphs needs CUDA; skipped")
        else:
            handle.set_g(0.5)
            jobs["coupled CUDA graph"] = cuda_graphed(fwd, device)
            if args.compile:
                jobs["coupled compiled + graph"] = cuda_graphed(jobs["coupled compiled"], device)

    def repeated(fn: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            for _ in range(args.iters):
                out = fn()
            return out

        return synced(run, device)

    for fn in jobs.values():  # warm-up (and compilation) outside the timed rounds
        repeated(fn)()
    times, _ = alternate({k: repeated(v) for k, v in jobs.items()}, args.rounds)
    rate = {k: B * args.iters / tmin(v) for k, v in times.items()}
    rate_med = {k: B * args.iters / tmed(v) for k, v in times.items()}
    print(f"\n{'variant':34s} {'img-fwd/s (min time)':>22s} {'(median)':>10s}  x plain eager")
    for k in jobs:
        print(f"{k:34s} {rate[k]:22.1f} {rate_med[k]:10.1f}  {rate[k] / rate['plain']:.3f}")

    if cuda:
        for name, fn in (
            ("sampler step", sampler_step),
            ("sampler step + Protocol II capture", captured_step),
        ):
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            fn()
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device)
            extra = (peak - base) / 2**30
            print(f"peak GPU memory, {name}: {peak / 2**30:.2f} GiB ({extra:.2f} GiB over resident)")
    else:
        print("peak GPU memory: n/a on CPU")

    overhead = rate["coupled sampler step"] / rate["sampler step + P-II capture"] - 1
    print("\ntargets of issue 13 (meant for a GPU):")
    step_ratio = rate["coupled sampler step"] / rate["plain"]
    print(f"  coupled sampler step / plain eager = {step_ratio:.3f} (target >= 0.9)")
    if "coupled compiled" in rate:
        print(
            f"  compiled coupled / plain eager = {rate['coupled compiled'] / rate['plain']:.3f} (target >= 2)"
        )
    print(f"  Protocol II capture overhead = {100 * overhead:.1f} % (target <= 5 %)")

    # Protocol I grid of the paper: 6 g + the g = 0 control, 32 seeds, t_int = 0..100, 100 steps, guidance
    S, M, G = 100, 32, 6 + 1
    per_seed = branched_row_steps(S, range(S + 1))  # pair-steps with prefix sharing
    scratch = (S + 1) * S  # pair-steps if every t_int were run from scratch
    images = G * M * per_seed * 2 * 2  # 2 replicas x 2 (guidance)
    print(
        f"\npaper Protocol I grid: {images:.3e} image-forwards with prefix sharing "
        f"({per_seed / scratch:.3f} of from-scratch); at the coupled sampler-step rate "
        f"{images / rate['coupled sampler step'] / 3600:.2f} h on this device"
    )


if __name__ == "__main__":
    main()

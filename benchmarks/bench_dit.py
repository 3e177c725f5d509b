"""Throughput of the plain DiT vs the replica-coupled sampler step, and the paper-grid wall clock.

    python benchmarks/bench_dit.py --device cuda --preset XL_2 --batch 256 [--compile] [--cuda-graphs]
    python benchmarks/bench_dit.py --device cpu --preset small --batch 16      # CPU smoke run

Reports image-forwards/s (one image through the transformer = 1) for
  (a) the plain diffusers DiT forward (stock attention processors),
  (b) the same batch with coupled processors installed (g = 0.5, two SDPA calls per layer),
  (c) our full coupled sampler step (guidance-doubled batch, per-pair g, DDIM update, keyed noise),
      drawing one CPU noise stream per pair (the Protocol II / from-scratch worst case; under
      Protocol I's prefix sharing the draws are per seed and shared by all of its branch rows),
optionally under torch.compile and CUDA graphs; peak GPU memory without and with the Protocol II
capture hooks; and the wall-clock estimate of the paper's Protocol I grid (6 g x 101 t_int x 32
seeds x 100 steps, guidance on, plus the g = 0 control) with prefix sharing counted.
Random weights (re-initialized, see models.reinit_weights); numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

from dit_validation.coupling import install_coupling
from dit_validation.models import build_random_dit
from dit_validation.protocol2 import DifferenceCapture
from dit_validation.sampler import _ddim, _step_noise, branched_row_steps, make_scheduler, predict_eps

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timeit(fn: Callable[[], object], device: torch.device, iters: int, warmup: int) -> float:
    """Seconds per call (median of ``iters`` timed calls after ``warmup``)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def cuda_graphed(fn: Callable[[], torch.Tensor], device: torch.device) -> Callable[[], torch.Tensor]:
    """Capture ``fn`` (static inputs closed over) in a CUDA graph; returns a replay closure."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(3):
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
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    preset = args.preset or ("XL_2" if cuda else "small")
    B = args.batch or (256 if cuda else 16)
    if B % 4:
        ap.error(f"--batch must be a multiple of 4 (pairs x guidance), got {B}")
    dtype = DTYPES[args.dtype or ("bfloat16" if cuda else "float32")]
    torch.backends.cuda.matmul.allow_tf32 = True
    bundle = build_random_dit(preset, seed=0, dtype=dtype)
    dit = bundle.transformer.to(device)
    C, H = bundle.latent_channels, bundle.sample_size
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(B, C, H, H, generator=gen).to(device, dtype)
    t = torch.full((B,), 500, device=device)
    y = torch.randint(0, bundle.num_classes, (B,), generator=gen).to(device)
    print(
        f"device={device} ({torch.cuda.get_device_name(device) if cuda else 'CPU'}) preset={preset} "
        f"batch={B} dtype={dtype} torch={torch.__version__}"
    )

    def fwd() -> torch.Tensor:
        with torch.no_grad():
            return dit(x, timestep=t, class_labels=y).sample

    rates: dict[str, float] = {}
    rates["plain"] = B / timeit(fwd, device, args.iters, args.warmup)
    handle = install_coupling(dit, g=0.5)
    rates["coupled forward"] = B / timeit(fwd, device, args.iters, args.warmup)

    # (c) the sampler step exactly as the engine runs it: P = B/4 pairs, guidance doubles to B images
    P = B // 4
    sched = make_scheduler(bundle, 100)
    z = torch.randn(2 * P, C, H, H, generator=gen).to(device, torch.float32)
    g_pairs = np.full(P, 0.5)
    seeds = list(range(P))

    def sampler_step() -> torch.Tensor:
        eps = predict_eps(bundle, handle, z, 499, g_pairs, 0, 4.0)
        nA, nB = _step_noise(seeds, 3, (C, H, H), shared=False)
        noise = torch.cat([nA, nB]).to(device, torch.float32)
        return _ddim(sched, eps, 499, z, 1.0, noise)

    rates["coupled sampler step"] = B / timeit(sampler_step, device, args.iters, args.warmup)

    if args.compile:
        compiled = torch.compile(dit)

        def cfwd() -> torch.Tensor:
            with torch.no_grad():
                return compiled(x, timestep=t, class_labels=y).sample

        handle.remove()
        rates["plain compiled"] = B / timeit(cfwd, device, args.iters, args.warmup + 2)
        handle = install_coupling(dit, g=0.5)
        fwd()  # create the coupling's g buffers eagerly, so the compiled graph has no break for them
        torch._dynamo.reset()
        compiled = torch.compile(dit)
        rates["coupled compiled"] = B / timeit(cfwd, device, args.iters, args.warmup + 2)
    if args.cuda_graphs:
        if not cuda:
            print("--cuda-graphs needs CUDA; skipped")
        else:
            rates["coupled CUDA graph"] = B / timeit(
                cuda_graphed(fwd, device), device, args.iters, args.warmup
            )
            if args.compile:
                rates["coupled compiled+graph"] = B / timeit(
                    cuda_graphed(cfwd, device), device, args.iters, args.warmup
                )

    for name, r in rates.items():
        print(f"{name:26s} {r:10.1f} image-forwards/s   ({r / rates['plain']:.3f} x plain eager)")

    # Protocol II capture: hooks on every block projecting onto a K = 32 float64 basis (eq. 74-75)
    K = 32
    D = (H // dit.config.patch_size) ** 2 * dit.inner_dim
    for capture in (False, True):
        cap = None
        if capture:
            cap = DifferenceCapture(dit, range(bundle.num_layers), guided=True, M=P, S=1, K=K)
            cap.R = {ell: torch.randn(K, D, dtype=torch.float64, device=device) for ell in cap.layers}
            cap.mode, cap.rows = "project", list(range(P))
            rates["sampler step + P-II capture"] = B / timeit(sampler_step, device, args.iters, args.warmup)
        if cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            sampler_step()
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device)
            print(
                f"peak GPU memory, sampler step{' + Protocol II capture' if capture else ''}: "
                f"{peak / 2**30:.2f} GiB (step adds {(peak - base) / 2**30:.2f} GiB over resident "
                f"{base / 2**30:.2f} GiB incl. the basis)"
            )
        if cap is not None:
            cap.remove()
    if not cuda:
        print("peak GPU memory: n/a on CPU")
    r = rates["sampler step + P-II capture"]
    ratio = r / rates["plain"]
    print(f"{'sampler step + P-II capture':26s} {r:10.1f} image-forwards/s   ({ratio:.3f} x plain eager)")

    # Protocol I grid of the paper: 6 g + the g = 0 control, 32 seeds, t_int = 0..100, 100 steps, guidance
    S, M, G = 100, 32, 6 + 1
    per_seed = branched_row_steps(S, range(S + 1))  # pair-steps with prefix sharing
    scratch = (S + 1) * S  # pair-steps if every t_int were run from scratch
    images = G * M * per_seed * 2 * 2  # 2 replicas x 2 (guidance)
    rate = rates["coupled sampler step"]
    print(
        f"paper Protocol I grid: {images:.3e} image-forwards with prefix sharing "
        f"({per_seed / scratch:.3f} of from-scratch {G * M * scratch * 4:.3e});"
    )
    for name in [k for k in rates if k.startswith("coupled")]:
        print(f"  at the {name} rate: {images / rates[name] / 3600:8.2f} h")
    print(f"  (sampler-step rate {rate:.1f}/s on {'GPU' if cuda else 'CPU, ' + preset + ' preset'})")


if __name__ == "__main__":
    main()

"""Throughput of the plain DiT vs the replica-coupled sampler, Protocol II capture overhead, peak memory.

    python benchmarks/bench_dit.py --device cuda --preset XL_2 --batch 256 --compile --cuda-graphs
    python benchmarks/bench_dit.py --device cpu --preset small --batch 16 --threads 1    # CPU run

Reports image-forwards/s (one image through the transformer = 1), every variant alternated round by
round (``--rounds``, ≥ 3; min and median of the rounds; benchmarks/_timing.py), for
  (a) the plain diffusers DiT forward with its **stock** attention processors (the coupling's are
      swapped out for this row and back in for the others);
  (b) the coupled processors at g = 0 (the inter-replica call skipped): what installing them costs;
  (c) the same batch with every pair at g = 0.5 (two SDPA calls per layer);
  (d) the same with Protocol I's row mix: 27 % of the pairs coupled (the trunk), 73 % at g = 0 (the
      decoupled branches) — the inter-replica call runs on the coupled rows only;
  (e) our full coupled sampler step (guidance-doubled batch, per-pair g, DDIM update);
  (f) the sampler step with the Protocol II capture hooks projecting onto a K = 32 float64 basis;
optionally torch.compile'd and CUDA-graph rows (coupled, g = 0.5); the peak GPU memory of (e) and (f);
the wall clock of the paper's Protocol I grid with prefix sharing; and the targets of issue 13 (on a
GPU): coupled sampler ≥ 0.9× the eager plain forward, compiled coupled ≥ 2× it, capture overhead ≤ 5 %.

What is timed, and what is not:
* every job installs its own processors and sets its own g before each of its rounds, untimed (then
  a device sync), so no job inherits a state from the one before it and a reordering cannot trigger
  a recompilation inside the timed rounds (the count of compiled graphs is checked and printed);
* the DDIM noise of the timed sampler steps is drawn **ahead** of the timing from the sampler's own
  keyed streams (per seed, replica and step: ``sampler._step_noise``) and moved to the device in one
  transfer; each timed step takes its slice, so host RNG work and host-to-device copies stay outside
  the kernels' time. What that host work costs the production sampler per step (it draws inside its
  loop) is timed as a separate job and printed beside the step;
* the capture overhead is the median over rounds of the paired ratio (capture step / plain step of
  the same round), with the min-time ratio beside it: the minimum of 3 noisy rounds alone can even
  come out negative.
Random weights (re-initialized, ``models.reinit_weights``; the XL/2 preset has the pretrained model's
FLOPs); numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import alternate, tmed, tmin  # noqa: E402

from dit_validation.capture import DifferenceCapture, ModeProjector  # noqa: E402
from dit_validation.coupling import attention_layers, install_coupling  # noqa: E402
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


def compiled_graphs() -> int:
    """Graphs torch.compile has built so far in this process (dynamo's counter)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def noise_feed(noise: torch.Tensor) -> Callable[[], torch.Tensor]:
    """The next step's pre-generated noise (K, 2P, C, H, W) → (2P, C, H, W): a view, no host work."""
    k = itertools.count()
    return lambda: noise[next(k) % noise.shape[0]]


def keyed_noise(seeds: list[int], steps: int, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """The sampler's keyed DDIM noise (replica A rows, then B) for steps 0 … steps−1, (steps, 2P, C, H, W)
    in float32 on ``device``, moved in one transfer."""
    host = torch.stack([torch.cat(_step_noise(seeds, s, shape, shared=False)) for s in range(steps)])
    return host.to(device, torch.float32)


def paired_overhead(t_base: list[float], t_extra: list[float]) -> tuple[float, float, float]:
    """(median, min, max) over rounds of t_extra[r] / t_base[r] − 1: each round's two runs are adjacent
    in time, so their ratio cancels most of a shared machine's drifting load."""
    ratios = [b / a - 1.0 for a, b in zip(t_base, t_extra, strict=True)]
    return statistics.median(ratios), min(ratios), max(ratios)


HOST_NOISE = "host: keyed noise draws + transfer"
PLAIN, STEP, CAPTURE = "plain (stock processors)", "coupled sampler step", "sampler step + P-II capture"
COMPILED = "coupled compiled (g = 0.5)"


def report(B: int, iters: int, times: dict[str, list[float]], recompiled: int) -> None:
    """The table of rates and the issue-13 targets, from min and median times."""
    work = B * iters  # image-forwards per timed round
    rate = {k: work / tmin(v) for k, v in times.items() if k != HOST_NOISE}
    rate_med = {k: work / tmed(v) for k, v in times.items() if k != HOST_NOISE}
    print(f"\n{'variant':34s} {'img-fwd/s (min time)':>22s} {'(median)':>10s}  x plain (min)  (median)")
    for k in rate:
        print(
            f"{k:34s} {rate[k]:22.1f} {rate_med[k]:10.1f}  {rate[k] / rate[PLAIN]:13.3f}  "
            f"{rate_med[k] / rate_med[PLAIN]:.3f}"
        )
    host, step = tmed(times[HOST_NOISE]) / iters, tmed(times[STEP]) / iters
    print(
        f"\nhost work of the production sampler per step, outside the timed steps above (keyed noise "
        f"draws + transfer): {1e3 * host:.2f} ms (median) = {100 * host / step:.2g} % of a step"
    )
    print(f"graphs compiled inside the timed rounds: {recompiled} (0 expected)")
    med, lo, hi = paired_overhead(times[STEP], times[CAPTURE])
    by_min = tmin(times[CAPTURE]) / tmin(times[STEP]) - 1.0
    print("\ntargets of issue 13 (meant for a GPU; min / median):")
    print(
        f"  coupled sampler step / plain eager = {rate[STEP] / rate[PLAIN]:.3f} / "
        f"{rate_med[STEP] / rate_med[PLAIN]:.3f} (target >= 0.9)"
    )
    if COMPILED in rate:
        print(
            f"  compiled coupled / plain eager = {rate[COMPILED] / rate[PLAIN]:.3f} / "
            f"{rate_med[COMPILED] / rate_med[PLAIN]:.3f} (target >= 2)"
        )
    print(
        f"  Protocol II capture overhead = {100 * med:.1f} % (median of the per-round paired ratios; "
        f"range {100 * lo:.1f} … {100 * hi:.1f} %; ratio of the minima {100 * by_min:.1f} %) (target <= 5 %)"
    )


def peak_memory(device: torch.device, fns: dict[str, Callable[[], object]]) -> None:
    for name, fn in fns.items():
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        extra = (peak - base) / 2**30
        print(f"peak GPU memory, {name}: {peak / 2**30:.2f} GiB ({extra:.2f} GiB over resident)")


def paper_grid(step_rate: float) -> None:
    """Wall clock of the paper's Protocol I grid at ``step_rate`` image-forwards/s, then the full grid's
    counted stages on 1–16 GPUs (:func:`grid_on_ranks`)."""
    S, M, G = 100, 32, 6 + 1  # 6 g + the g = 0 control, 32 seeds, t_int = 0..100, 100 steps, guidance
    per_seed = branched_row_steps(S, range(S + 1))  # pair-steps with prefix sharing
    scratch = (S + 1) * S  # pair-steps if every t_int were run from scratch
    images = G * M * per_seed * 2 * 2  # 2 replicas x 2 (guidance)
    print(
        f"\npaper Protocol I grid: {images:.3e} image-forwards with prefix sharing "
        f"({per_seed / scratch:.3f} of from-scratch); at the coupled sampler-step rate (median) "
        f"{images / step_rate / 3600:.2f} h on this device"
    )
    grid_on_ranks(step_rate)


def protocol1_forwards(cfg, seeds: int) -> int:  # noqa: ANN001 - a Protocol1Config
    """Image-forwards of ``seeds`` seeds at one g of Protocol I, guidance aside: both replicas through the
    shared trunk and every branch (prefix sharing, every t_int when ``cfg.t_int`` is None)."""
    grid = range(cfg.num_steps + 1) if cfg.t_int is None else cfg.t_int
    return seeds * 2 * branched_row_steps(cfg.num_steps, grid)


def protocol2_forwards(cfg) -> int:  # noqa: ANN001 - a Protocol2Config
    """Image-forwards of one g of Protocol II, guidance aside: the measured pairs at s = 0 (the paper's
    basis) and along the whole trajectory, and the held-out basis pairs at s = 0."""
    return 2 * (cfg.num_seeds * (cfg.num_steps + 1) + cfg.basis_pairs)


def full_grid_units() -> list[list[tuple[str, str, int]]]:
    """The image-forwards of the full grid's sharded units that dominate it, per stage: (unit, kind, count)
    in the order the ranks are offered them. Protocol I (g, seed-group) units with prefix sharing, Protocol
    II per g (both passes, the held-out basis pairs), compare's clone splits per g. Not counted: compare's
    branch directions, EM pairs, closure and float64 derivatives, depth's causal stage, the summaries."""
    from dit_validation.clone_sampler import clone_row_steps
    from dit_validation.compare import FULL, unit_names, unit_phases
    from dit_validation.grids import PAPER_G, PROTOCOL1_G
    from dit_validation.protocol1 import Protocol1Config
    from dit_validation.protocol2 import Protocol2Config

    cfg = 2  # classifier-free guidance doubles every row (scale 4.0 for DiT-XL/2)
    p1, p2 = Protocol1Config(g=PROTOCOL1_G), Protocol2Config(g=PAPER_G)
    chunk = protocol1_forwards(p1, p1.seed_chunk) * cfg
    tags = [f"g={g:g}" for g in p1.g] + ["control"]
    protocol1 = [(f"{t}/seed={m}", "", chunk) for t in tags for m in range(0, p1.num_seeds, p1.seed_chunk)]
    protocol2 = [(f"g={g:g}", "", protocol2_forwards(p2) * cfg) for g in p2.g]
    phase = unit_phases(FULL, "imagenet")[1]  # clones, step curvatures, block parts, closure
    clones = []
    for name in (n for n in unit_names(FULL, "imagenet") if n in phase):
        kind, _, g = name.partition("/g=")
        rows = clone_row_steps(FULL.num_steps, FULL.t_ints(), float(g)) if kind == "clones" else 0
        clones.append((name, name.partition("/")[0], FULL.clone_seeds * rows * cfg))
    return [protocol1, protocol2, clones]


def grid_on_ranks(step_rate: float, ranks: tuple[int, ...] = (1, 2, 4, 8, 16)) -> None:
    """Wall clock of :func:`full_grid_units` at ``step_rate`` image-forwards/s per GPU on N GPUs: each
    unit on the rank the job's own assignment gives it (:class:`dit_validation.shards.UnitShare`), each
    stage as long as its busiest rank (every rank with a clone unit first samples compare's trunk)."""
    from dit_validation.compare import FULL
    from dit_validation.shards import UnitShare

    stages = full_grid_units()
    total = sum(n for stage in stages for _, _, n in stage)
    trunk = FULL.clone_seeds * FULL.num_steps * 2
    print(f"full grid, counted stages: {total:.3e} image-forwards (+ {trunk:.2e} per rank for the trunk)")
    for n in ranks:
        wall = 0
        for i, stage in enumerate(stages):
            loads = []
            for r in range(n):
                share = UnitShare(rank=r, size=n)
                mine = [c for key, kind, c in stage if share.mine(key, kind)]
                loads.append(sum(mine) + (trunk if i == 2 and any(mine) else 0))
            wall += max(loads)
        print(f"  {n:2d} GPU(s): {wall / step_rate / 3600:5.2f} h at {step_rate:,.0f} image-forwards/s each")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--preset", default=None, help="XL_2 (default on CUDA), small (default on CPU), tiny")
    ap.add_argument("--batch", type=int, default=None, help="images per forward (multiple of 4)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="bfloat16 on CUDA, float32 on CPU")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd forwards")
    ap.add_argument(
        "--compile-backend", default="inductor", help="torch.compile backend (eager: a cheap CPU check)"
    )
    ap.add_argument("--cuda-graphs", action="store_true", help="also time CUDA-graph replays (CUDA only)")
    ap.add_argument("--rounds", type=int, default=5, help="alternated rounds per variant (>= 3)")
    ap.add_argument("--iters", type=int, default=3, help="calls per timed round")
    ap.add_argument(
        "--grid-rate",
        type=float,
        default=None,
        help="only print the full grid's wall clock on 1-16 GPUs at this many image-forwards/s per GPU",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args(argv)
    if args.grid_rate is not None:
        if args.grid_rate <= 0:
            ap.error(f"--grid-rate must be > 0 image-forwards/s, got {args.grid_rate}")
        grid_on_ranks(args.grid_rate)
        return
    if args.rounds < 3:
        ap.error(f"--rounds must be an integer >= 3, got {args.rounds}")
    if args.iters < 1:
        ap.error(f"--iters must be an integer >= 1, got {args.iters}")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    preset = args.preset or ("XL_2" if cuda else "small")
    B = args.batch or (256 if cuda else 16)
    if B < 4 or B % 4:
        ap.error(f"--batch must be a positive multiple of 4 (pairs x guidance), got {B}")
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

    layers = attention_layers(dit)
    stock = [layer.processor for layer in layers]  # diffusers' own processors, before the coupling's
    handle = install_coupling(dit, g=0.0)
    coupled = [layer.processor for layer in layers]

    def state(procs: list[object], g: float | np.ndarray | None) -> Callable[[], None]:
        """Setup of one job: its processors and its g (None: the job sets g itself), then a sync."""

        def run() -> None:
            for layer, proc in zip(layers, procs, strict=True):
                layer.set_processor(proc)
            if g is not None:
                handle.set_g(g)
            if cuda:
                torch.cuda.synchronize(device)

        return run

    jobs: dict[str, Callable[[], object]] = {}
    setup: dict[str, Callable[[], None]] = {}

    def add(name: str, fn: Callable[[], object], procs: list[object], g: float | np.ndarray | None) -> None:
        jobs[name], setup[name] = fn, state(procs, g)

    add(PLAIN, fwd, stock, None)
    add("coupled processors, g = 0", fwd, coupled, 0.0)
    add("coupled forward (all g = 0.5)", fwd, coupled, 0.5)
    mix = np.tile(np.where(np.arange(B // 2) % 4 == 0, 0.5, 0.0), 2)
    add("coupled forward (Protocol I mix)", fwd, coupled, mix)

    P = B // 4
    sched = make_scheduler(bundle, 100)
    z = torch.randn(2 * P, C, H, H, generator=gen).to(device, torch.float32)
    seeds, shape = list(range(P)), (C, H, H)
    calls = (args.rounds + 1) * args.iters  # warm-up round + timed rounds of one sampler job
    noise = keyed_noise(seeds, calls, shape, device)
    g_pairs = np.full(P, 0.5)

    def sampler_step(next_noise: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            eps = predict_eps(bundle, handle, z, 499, g_pairs, 0, 4.0)
            return _ddim(sched, eps, 499, z, 1.0, next_noise())

        return run

    K = 32
    D = (H // dit.config.patch_size) ** 2 * dit.inner_dim
    projector = ModeProjector(
        [torch.randn(K, D, dtype=torch.float64, device=device) for _ in range(bundle.num_layers)], 1, P
    )
    step_with_capture = sampler_step(noise_feed(noise))

    def captured_step() -> torch.Tensor:
        with DifferenceCapture(dit, range(bundle.num_layers), True, projector.into(range(P))):
            return step_with_capture()

    add(STEP, sampler_step(noise_feed(noise)), coupled, None)  # predict_eps sets g
    add(CAPTURE, captured_step, coupled, None)
    host_step = itertools.count()

    def host_noise() -> torch.Tensor:  # what the production sampler does on the host each step
        return torch.cat(_step_noise(seeds, next(host_step), shape, shared=False)).to(device, torch.float32)

    jobs[HOST_NOISE] = host_noise
    if args.compile:
        state(coupled, 0.5)()
        fwd()  # create the coupling's g buffers eagerly, so the compiled graph has no break for them
        compiled = torch.compile(dit, backend=args.compile_backend)

        def cfwd() -> torch.Tensor:
            with torch.no_grad():
                return compiled(x, timestep=t, class_labels=y).sample

        add(COMPILED, cfwd, coupled, 0.5)
    if args.cuda_graphs:
        if not cuda:
            print("--cuda-graphs needs CUDA; skipped")
        else:
            state(coupled, 0.5)()
            add("coupled CUDA graph (g = 0.5)", cuda_graphed(fwd, device), coupled, 0.5)
            if args.compile:
                add("coupled compiled + graph", cuda_graphed(cfwd, device), coupled, 0.5)

    def repeated(fn: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            for _ in range(args.iters):
                out = fn()
            return out

        return synced(run, device)

    timed = {k: repeated(v) for k, v in jobs.items()}
    for k, fn in timed.items():  # warm-up (and compilation) outside the timed rounds
        if k in setup:
            setup[k]()
        fn()
    graphs = compiled_graphs()
    times, _ = alternate(timed, args.rounds, setup)
    recompiled = compiled_graphs() - graphs
    report(B, args.iters, times, recompiled)
    if cuda:
        state(coupled, None)()
        peak_memory(device, {"sampler step": jobs[STEP], "sampler step + Protocol II capture": captured_step})
    else:
        print("peak GPU memory: n/a on CPU")
    paper_grid(B * args.iters / tmed(times[STEP]))


if __name__ == "__main__":
    main()

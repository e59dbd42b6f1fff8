"""Pretrain the learned multi-algorithm processor (:mod:`models.processor.generalist`).

    PYTHONPATH=. python -m models.processor.generalist_pretrain --out artifacts/generalist \
        [--iterations 4000] [--batch-graphs 8] [--hidden 128] [--layer-norm] [--seed 0]

Resumable: the checkpoint ``<out>.ckpt.pt`` is written every 100 iterations and resumed
when it exists (delete it to start over). Progress lines go to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from models.processor import generalist as gen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    defaults, model_defaults = gen.GeneralistTrainConfig(), gen.GeneralistConfig()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    parser.add_argument("--iterations", type=int, default=defaults.iterations)
    parser.add_argument("--batch-graphs", type=int, default=defaults.batch_graphs)
    parser.add_argument("--max-nodes", type=int, default=defaults.max_nodes)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--hidden", type=int, default=model_defaults.hidden)
    parser.add_argument("--algorithms", nargs="+", default=list(model_defaults.algorithms),
                        choices=sorted(gen.ALGORITHMS))
    parser.add_argument("--layer-norm", action="store_true",
                        help="layer-normalise the candidate state (bounded latents; worse out "
                        "of distribution, see benchmarks/results/processor_generalist.json)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.batch_graphs < 1 or args.hidden < 1:
        parser.error("--iterations, --batch-graphs and --hidden must be positive")
    if not 2 <= args.max_nodes <= 16:
        parser.error("--max-nodes must lie in [2, 16] (CLRS trains at n <= 16)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train_config = dataclasses.replace(
        defaults, seed=args.seed, iterations=args.iterations, batch_graphs=args.batch_graphs,
        max_nodes=args.max_nodes, learning_rate=args.learning_rate,
    )
    model = gen.GeneralistProcessor(
        gen.GeneralistConfig(hidden=args.hidden, algorithms=tuple(args.algorithms),
                             layer_norm=args.layer_norm)
    )
    checkpoint = Path(f"{str(args.out).rstrip('/')}.ckpt.pt")
    began = time.monotonic()
    history = gen.train(model, train_config, checkpoint=checkpoint,
                        log=lambda line: print(line, flush=True))
    model.requires_grad_(False).eval()
    tail = history[-100:]
    gen.save(args.out, model, train_config, force=args.force, metrics={
        "final_loss_mean_last_100": sum(tail) / max(len(tail), 1),
        "train_seconds_this_run": round(time.monotonic() - began, 1),
    })
    checkpoint.unlink(missing_ok=True)
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

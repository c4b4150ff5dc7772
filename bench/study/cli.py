"""``copybench study data-size | demo | report``: their options and thin wrappers over
:func:`copybench.study.data_size_study`, :func:`copybench.study.demo.study_demo` and
:func:`copybench.study.report.build_report`.

Apart from :mod:`copybench.study` (numpy at the top) so that building the parser imports nothing heavy.
"""

from __future__ import annotations

from copybench.cliutil import add_descriptor_dir, add_top_k
from copybench.options import PREDICTIONS, SAMPLERS, STUDY_DETECTOR, default_descriptor_dir


def register_cli(subparsers) -> None:
    """Add ``copybench study data-size``, ``study demo`` and ``study report`` to the CLI."""
    study = subparsers.add_parser(
        "study", help="the study's experiments: replication against training-set size"
    ).add_subparsers(dest="study_command", required=True, metavar="STUDY")
    p = study.add_parser("data-size", help="train DDPMs on nested subsets, scan each, plot rate against size")
    p.add_argument("--train", required=True, help="folder of training images (searched recursively)")
    p.add_argument("--sizes", required=True, help="subset sizes, comma list, e.g. 300,3000,30000")
    p.add_argument("--out", required=True, help="output folder (subsets, models, samples, scans, report)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (bf16 mixed precision on cuda)")
    p.add_argument("--steps", type=int, default=2000, help="training steps per size (default 2000)")
    p.add_argument("--resolution", type=int, default=32, help="training resolution in pixels (default 32)")
    p.add_argument("--samples", type=int, default=64, help="generations per size (default 64)")
    p.add_argument("--detector", default=STUDY_DETECTOR, help=f"scan detector (default {STUDY_DETECTOR})")
    p.add_argument("--seed", type=int, default=0, help="seed of the subsets, training and sampling")
    p.add_argument(
        "--generated-by", default=None, metavar="DIR", help="skip training: DIR/<size>/ holds generations"
    )
    p.add_argument("--subsets-only", action="store_true", help="write the nested subsets and stop")
    p.add_argument("--model", default="small", choices=("tiny", "small", "base"), help="UNet preset")
    p.add_argument("--batch-size", type=int, default=64, help="training batch size (default 64)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate after warm-up (default 1e-3)")
    p.add_argument(
        "--prediction",
        default="epsilon",
        choices=PREDICTIONS,
        help="UNet target: epsilon (the noise, DDPM) or sample (the clean image; memorises small sets sooner)",
    )
    p.add_argument("--sampler", default="dpm", choices=SAMPLERS, help="dpm (DPM-Solver++) or ddim")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--sampling-steps", type=int, default=25, help="sampler steps (default 25)")
    p.add_argument("--checkpoint-every", type=int, default=200, help="checkpoint every N steps (and 2 min)")
    _add_scan_options(p)
    p.set_defaults(func=cmd_data_size)
    d = study.add_parser("demo", help="the data-size study on embedded images, about ten minutes on a CPU")
    d.add_argument("--out", default="runs/study-demo", help="output folder (default runs/study-demo)")
    d.add_argument("--device", default="cpu")
    d.add_argument(
        "--detector", default="pixel_rgb_16", help="scan detector (default pixel_rgb_16: see docs/study.md)"
    )
    d.add_argument("--threshold", type=float, default=0.9, help="flag top-1 similarity >= this (default 0.9)")
    d.add_argument("--seed", type=int, default=0)
    add_descriptor_dir(d, str(default_descriptor_dir()))
    d.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: see docs/study.md)")
    d.set_defaults(func=cmd_demo)
    r = study.add_parser(
        "report", help="rebuild a study's table, figures and report.html from its stored files"
    )
    r.add_argument("out", help="the study's output folder")
    r.set_defaults(func=cmd_report)


def _add_scan_options(p) -> None:
    p.add_argument(
        "--threshold",
        type=_threshold_arg,
        default=0.5,
        help="replication threshold on top-1 similarity, compared under the protocol's rule (default 0.5)",
    )
    p.add_argument(
        "--protocol",
        default="native",
        help="scan protocol (see `copybench scan --help`; dcr with --threshold none: the study's > 0.5)",
    )
    add_top_k(p, 5, "training matches kept per generation (default 5)", dest="top_k")
    p.add_argument("--scan-batch-size", type=int, default=32, help="detector batch size")
    p.add_argument("--allow-random", action="store_true", help="detector without weights: random (stated)")
    add_descriptor_dir(p, str(default_descriptor_dir()))
    p.add_argument("--no-cache", action="store_true", help="do not read or write the descriptor cache")


def _threshold_arg(text: str) -> float | None:
    """A number, or ``none`` for the protocol's own threshold."""
    return None if text.strip().lower() == "none" else float(text)


def cmd_data_size(args) -> int:
    """Run the study and print its table."""
    from copybench.study.experiment import data_size_study

    record = data_size_study(
        args.train,
        args.sizes,
        args.out,
        device=args.device,
        steps=args.steps,
        resolution=args.resolution,
        samples=args.samples,
        detector=args.detector,
        seed=args.seed,
        generated_by=args.generated_by,
        subsets_only=args.subsets_only,
        model=args.model,
        batch_size=args.batch_size,
        lr=args.lr,
        prediction=args.prediction,
        sampler=args.sampler,
        sampling_steps=args.sampling_steps,
        checkpoint_every=args.checkpoint_every,
        threshold=args.threshold,
        protocol=args.protocol,
        top_k=args.top_k,
        scan_batch_size=args.scan_batch_size,
        allow_random=args.allow_random,
        descriptor_dir=None if args.no_cache else args.descriptor_dir,
        threads=args.threads,
        progress=not args.quiet,
    )
    return _print(record)


def _print(record: dict) -> int:
    from copybench.progress import console as make_console
    from copybench.study.report import print_study

    console = make_console()  # results on stdout; progress and errors go to stderr
    if "subsets" in record:
        for size, folder in record["subsets"].items():
            console.print(f"subset of {size}: {folder}", highlight=False)
        return 0
    print_study(record, console)
    return 0


def cmd_demo(args) -> int:
    """The embedded demo."""
    from copybench.study.demo import study_demo

    record = study_demo(
        args.out,
        device=args.device,
        detector=args.detector,
        threshold=args.threshold,
        seed=args.seed,
        descriptor_dir=args.descriptor_dir,
        progress=not args.quiet,
    )
    return _print(record)


def cmd_report(args) -> int:
    """Rebuild the report from the stored files."""
    from copybench.study.report import build_report, read_study

    build_report(args.out)
    return _print(read_study(args.out))

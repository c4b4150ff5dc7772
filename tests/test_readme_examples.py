"""The examples of the README and of the docs pages (docs/*.md), run: every command in their bash blocks is
either run here or listed in NOT_RUN with the reason, and their Python examples run as written.

The cheap commands and the Python blocks run in the default suite; the dataset session (build, run, table,
plot, the ten baselines' command, a protocol run, the CI gate after a full demo) takes minutes on a 2-core CPU
and is marked slow: ``.venv/bin/python -m pytest -m slow tests/test_readme_examples.py``.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the README first (the session's dataset is built there), then the docs pages in name order
DOC_FILES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
TEXTS = {path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8") for path in DOC_FILES}

# command prefix -> why it is not run by the test suite
NOT_RUN = {
    "bash .ci/setup.sh": "the Quickstart itself: what CI runs before the suite",
    ".venv/bin/python -m pytest": "the Quickstart itself: this test suite",
    "source .venv/bin/activate": "shell set-up, nothing to check",
    "copybench data import copydays copydays/": "needs the Copydays images",
    "copybench data import disc21 disc21/": "needs the DISC21 images",
    "copybench run --dataset runs/data/cd10k": "needs the Copydays import above",
    "copybench run --dataset runs/data/disc21": "needs the DISC21 import above",
    "copybench weights fetch": "downloads weights (tests never use the network; tests/detectors/test_fetch.py "
    "covers it against a local server)",
    "copybench run --dataset D --detectors dino_vitb16 --download": "downloads weights",
    "copybench run --dataset runs/data/segmix_hard-s --detectors baselines,my_detectors:edge_hist_128": (
        "'baselines' needs `weights fetch baselines` (the session below runs the README's `--detectors baselines` "
        "without them); the plugin example itself is run below"
    ),
    ".venv/bin/copybench demo --results results/default --force": "regenerates the published leaderboard",
    ".venv/bin/copybench publish results/default results/throughput --out docs/leaderboard": (
        "rewrites the committed site (tests/report/test_site_published.py builds it into a temporary folder and "
        "fails when the committed one differs)"
    ),
    "copybench publish results/default results/throughput --out docs/leaderboard": (
        "rewrites the committed site (as the .venv/bin/copybench form above)"
    ),
    "copybench publish runs/demo/results runs/throughput --out site/": (
        "needs a demo and a throughput run in runs/ (tests/report/test_site_published.py builds a site from result "
        "files)"
    ),
    "copybench scan --generated samples/ --train /mnt/shared/": (
        "a Ray cluster, a GPU and a 12M-image training set (tests/scaling/test_ray_engine.py runs scan --engine ray)"
    ),
    "copybench run --dataset runs/data/segmix_hard-s --detectors sscd_disc_mixup.onnx_int8 --engine ray": (
        "a Ray cluster (tests/scaling/test_ray_engine.py runs --engine ray on a local one)"
    ),
    "copybench throughput --detectors sscd_disc_mixup.sq288": "a GPU",
    "copybench throughput --detectors sscd_disc_mixup.onnx_int8,efficientnet_lite0": (
        "minutes of timing (tests/throughput/test_throughput.py runs the same command on tiny settings)"
    ),
    ".venv/bin/pytest tests/benchmarks": "the speed benchmarks, minutes long and not pass/fail on speed alone",
    "COPYBENCH_BENCH_RESULTS=results/throughput .venv/bin/pytest tests/benchmarks/test_bench_scale.py": (
        "the scale benchmarks: minutes long, they rewrite the published scale measurements"
    ),
    ".venv/bin/copybench demo": "the Quickstart demo (the slow session below runs `copybench demo --out runs/ci`)",
    "copybench study data-size --train celeba/": (
        "a 30,000-image folder and a GPU (tests/study/test_study.py runs the same pipeline on tiny settings)"
    ),
    "copybench study demo": "minutes of CPU training (results/study-demo holds its measured run)",
    "copybench data build sweep-all-xs": (
        "a 1,600-query sweep, minutes on a CPU (tests/robustness/test_cli.py builds, runs, profiles and gates a "
        "small sweep through the same commands)"
    ),
    "copybench run --dataset data/sweep": "scores the sweep above (tests/robustness/test_cli.py)",
    "copybench robustness runs/results": "profiles the sweep above (tests/robustness/test_cli.py)",
    "copybench check --baseline results/robustness/embedded": (
        "gates the sweep above (tests/robustness/test_cli.py runs the robustness gate)"
    ),
    "copybench scan --generated samples/ --train 's3://": (
        "an object store, a GPU and a Ray cluster (tests/scaling/test_shards.py and test_shards_ray.py scan "
        "WebDataset shards locally and on a local Ray cluster)"
    ),
    "TRAIN=/path/to/30000+/images": "a lent GPU and a 30,000-image folder (tests/benchmarks/study_gpu.sh)",
}
# the README's ten baselines: tests never have their weights (no network), so the run must refuse every one of
# them naming the fetch command; with the weights in place it runs them
BASELINES_RUN = "copybench run --dataset runs/data/segmix_hard-s --detectors baselines"
# docs/scan.md's scan: run on the session's dataset (its queries as the generated set, its references as the
# training set), on the CPU when no GPU is here
SCAN = "copybench scan --generated samples/ --train laion_subset/"
FAST = (
    "copybench list recipes",
    "copybench list detectors",
    "copybench list protocols",
    "copybench weights list",
)
# the slow session, in README then docs order; data build gets --n-queries to stay small (same code path)
SLOW = (
    "copybench data build segmix_hard-s",
    "copybench run --dataset runs/data/segmix_hard-s --detectors sscd_disc_mixup.onnx_int8",
    BASELINES_RUN,
    "copybench table runs/results --format html",
    "copybench plot runs/results",
    "copybench table runs/results",
    "copybench run --dataset runs/data/segmix_hard-s --detectors efficientnet_lite0 --protocol dcr",
    "copybench demo --out runs/ci -q",
    "copybench check --baseline results/default --results runs/ci/results",
    "cp -r runs/results runs/baseline",
    "copybench check --baseline runs/baseline --results runs/results",
    SCAN,
)


def readme_commands(text: str | None = None) -> list[str]:
    """Every command of the bash blocks of the README and docs pages (or of one text): continuations joined,
    comments dropped, `&&` split."""
    out = []
    texts = [text] if text is not None else list(TEXTS.values())
    for block in [b for t in texts for b in re.findall(r"```bash\n(.*?)```", t, re.DOTALL)]:
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                out += [" ".join(part.split()) for part in line.split("&&")]
    return out


def _kind(command: str) -> str:
    for prefixes, kind in ((NOT_RUN, "not run"), (FAST, "fast"), (SLOW, "slow")):
        if any(command.startswith(p) for p in prefixes):
            return kind
    return "unlisted"


def test_every_readme_command_is_run_or_listed_with_a_reason():
    commands = readme_commands()
    assert len(commands) > 20  # the parser found the blocks
    assert len(readme_commands(TEXTS["README.md"])) >= 10  # the README's own: Quickstart, session, baselines
    assert [c for c in commands if _kind(c) == "unlisted"] == []
    used = {p for p in (*NOT_RUN, *FAST, *SLOW) if any(c.startswith(p) for c in commands)}
    assert used == {*NOT_RUN, *FAST, *SLOW}  # no stale entries for examples the README dropped


def _run(command: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    args = shlex.split(command)
    if args[0] == "copybench":  # this interpreter's copybench, whatever is on PATH
        args = [sys.executable, "-m", "copybench.cli", *args[1:]]
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "results").symlink_to(ROOT / "results")  # the published results the examples compare against
    return tmp_path


@pytest.mark.parametrize("prefix", FAST)
def test_fast_readme_commands(prefix, workdir):
    for command in [c for c in readme_commands() if c.startswith(prefix)]:
        done = _run(command, workdir)
        assert done.returncode == 0, f"{command}: {done.stderr[-2000:]}"
        assert done.stdout.strip(), command


def _python_blocks() -> list[str]:
    return [b for text in TEXTS.values() for b in re.findall(r"```python\n(.*?)```", text, re.DOTALL)]


# how each Python block is recognised (a line it contains) -> None (run here) or why it is not run
PYTHON_BLOCKS = {
    "# my_detectors/__init__.py": None,
    "# my_detectors/model.py": None,
    'frame = copybench.load_results("results/default")': None,
    "fetch_weights([": "downloads weights, then runs every baseline on a 150-query dataset",
}


def test_every_readme_python_block_is_run_or_listed():
    for block in _python_blocks():
        assert [k for k in PYTHON_BLOCKS if k in block], block[:200]


def _write_plugin(workdir: Path) -> None:
    """The docs' plugin package, each `# my_detectors/FILE` block into its file, in the working folder."""
    (workdir / "my_detectors").mkdir()
    files = [b for b in _python_blocks() if b.startswith("# my_detectors/")]
    assert len(files) == 2, files
    for block in files:
        name = re.match(r"# my_detectors/(\w+\.py)", block).group(1)
        (workdir / "my_detectors" / name).write_text(block)


def test_readme_python_examples_run(workdir):
    blocks = _python_blocks()
    _write_plugin(workdir)
    contract = re.search(
        r'`python -c "(from copybench\.detectors import check_detector_contract[^"]*)"`',
        "\n".join(TEXTS.values()),
    )
    script = "import my_detectors\n" + contract.group(1).replace("; ", "\n") + "\nprint('contract ok')"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=workdir, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "contract ok" in done.stdout, done.stderr[-2000:]
    frame_block = next(b for b in blocks if 'frame = copybench.load_results("results/default")' in b)
    code = frame_block + "\nassert len(overall) and len(per_family) > len(overall) and len(speed)\n"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
def test_readme_session_end_to_end(workdir):
    """The "typical session", the ten baselines and the CI gate, in README then docs order, in one folder."""
    from copybench.detectors import BASELINES

    commands = [c for c in readme_commands() if _kind(c) == "slow"]
    for command in commands:
        done = _run(_prepare(command, workdir), workdir, timeout=1800)
        if command == BASELINES_RUN and done.returncode == 2:  # no weights here: each refused, fetch named
            fetch = done.stderr[done.stderr.index("copybench weights fetch") :]
            assert all(name in fetch for name in BASELINES), done.stderr[-2000:]
            continue
        assert done.returncode == 0, f"{command}: {done.stdout[-1500:]} {done.stderr[-2000:]}"
    assert (workdir / "runs" / "leaderboard.html").is_file()
    assert any((workdir / "runs" / "plots").glob("pr_*.png"))
    assert (workdir / "runs" / "scan-sd" / "report.html").is_file()


def _prepare(command: str, workdir: Path) -> str:
    """What a session command needs first, and the command as the test runs it (smaller, or on the CPU)."""
    if command.startswith("copybench data build"):
        return command + " --n-queries 12"  # same code path, fewer copies
    if command.startswith(SCAN):
        import shutil

        import torch

        data = workdir / "runs" / "data" / "segmix_hard-s"
        for folder, source, n in (("samples", "queries", 6), ("laion_subset", "references", 12)):
            (workdir / folder).mkdir()
            for image in sorted((data / source).iterdir())[:n]:
                shutil.copy(image, workdir / folder)
        if not torch.cuda.is_available():
            command = command.replace("--device cuda", "--device cpu")
    return command


def test_readme_plugin_runs_through_the_console_script(workdir, tiny_dataset):
    """The detectors page's plugin, as a user follows it: `my_detectors/__init__.py` in the working folder (not the
    repository, not on sys.path), then the installed `copybench` console script with `module:factory`.
    `python -m` would put the working folder on sys.path and hide the bug, so the console script runs here."""
    _write_plugin(workdir)
    name = re.search(r"--detectors (my_detectors:\w+)`", TEXTS["docs/detectors.md"]).group(1)
    script = Path(sys.executable).parent / "copybench"
    args = [str(script), "-q", "run", "--dataset", str(tiny_dataset), "--detectors", name]
    done = subprocess.run(
        [*args, "--results", "plugin-results"], cwd=workdir, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    written = [json.loads(p.read_text()) for p in (workdir / "plugin-results").rglob("*.json")]
    assert [r["detector"]["name"] for r in written] == ["edge_hist_128"]
    assert written[0]["detector"]["meta"]["origin"] == "ad hoc my_detectors"  # not labelled a built-in
    assert "micro_ap" in written[0]["metrics"]

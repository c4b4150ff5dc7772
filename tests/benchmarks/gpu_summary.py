"""Figures of a gpu_check.sh run against issue 11's targets; exit 1 when one is missed or missing.

Usage: python tests/benchmarks/gpu_summary.py OUT/results
"""

from __future__ import annotations

import sys
from pathlib import Path

from copybench.results import read_results

E2E_TARGETS = {"sscd": 0.9, "resnet": 0.9, "dino": 0.8, "clip": 0.8}  # e2e/model, by detector family


def _target(name: str) -> float | None:
    return next((t for key, t in E2E_TARGETS.items() if key in name), None)


def _throughput_lines(results, folder: str) -> tuple[list[str], bool]:
    lines, ok = [], True
    for r in results:
        m = r.measurements[0]
        target = _target(r.detector_name) if folder == "throughput" else None
        ratio = m.get("e2e_over_model")
        hit = target is None or (ratio is not None and ratio >= target)
        ok &= hit
        lo, hi = m.get("e2e_over_model_range") or (None, None)
        lines.append(
            f"[{folder}] {r.detector_name} [{r.weights_status}] {m['dtype']} b{m['batch_size']} "
            f"decode={m['e2e_decode']}: model {m['model_ips']:,.0f} img/s, e2e {m['e2e_ips']:,.0f} img/s, "
            f"e2e/model {ratio:.2f} (rounds {lo:.2f}-{hi:.2f})"
            + (f" target {target} {'MET' if hit else 'MISSED'}" if target else "")
            + (f", reference {m['reference_e2e_ips']:,.0f} img/s" if m.get("reference_e2e_ips") else "")
            + f", retrieval {m['retrieval_qps']:,.0f} q/s, peak device MB {m.get('peak_device_mb')}"
        )
        if m.get("stages"):  # --stages: each stage alone, in pipeline order, and the slowest
            from copybench.throughput.stages import STAGES

            rates = {s: m["stages"][s]["ips"] for s in STAGES if s in m["stages"]}
            lines.append(
                f"[{folder}]   stages img/s: "
                + ", ".join(f"{s} {v:,.0f}" for s, v in rates.items())
                + f"; slowest {min(rates, key=rates.get)}; end to end {m['e2e_ips']:,.0f}"
            )
    return lines, ok


def _scale_lines(results) -> tuple[list[str], bool]:
    lines, ok = [], True
    for r in results:
        for m in r.measurements:
            name = r.key["measurement"]
            if name == "exact_topk_cuda":
                hit = m["seconds"] <= 10 and (m["device_peak_mb"] or 0) <= 8192
                lines.append(
                    f"[scale] exact top-k {m['n_references']:,} x {m['n_queries']:,} d={m['dims']} on "
                    f"{r.key['device_name']}: {m['seconds']:.2f} s, device peak {m['device_peak_mb']} MB, host "
                    f"+{m['search_mb']:.0f} MB; target <= 10 s, <= 8 GB {'MET' if hit else 'MISSED'}"
                )
            elif name.startswith("copy_generation"):
                # no target on a CPU (a batch adds pixel work there); 10x on a GPU
                hit = m["target"] is None or m["batched_over_loop"] >= m["target"]
                diff = {k: m[k] for k in m if k.startswith("cpu_vs_device")}
                lines.append(
                    f"[scale] copy generation {m['recipe']} x{m['n_queries']}: batched {m['batched_qps']:,.1f} q/s, "
                    f"loop {m['loop_qps']:,.2f} q/s, ratio {m['batched_over_loop']:.2f} "
                    + (
                        f"(target {m['target']}) {'MET' if hit else 'MISSED'}"
                        if m["target"]
                        else "(no CPU target)"
                    )
                    + f"; batched vs one-by-one max {m.get('batched_vs_loop_max')}; CPU vs device pixels {diff}"
                )
            else:
                hit = True
                lines.append(f"[scale] {name}: {m}")
            ok &= hit
    return lines, ok


def main(root: str) -> int:
    ok = True
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        results, errors = read_results(folder)
        lines, hit = _throughput_lines([r for r in results if r.kind == "throughput"], folder.name)
        more, hit2 = _scale_lines([r for r in results if r.kind == "scale"])
        ok &= hit and hit2
        print("\n".join(lines + more + [f"unreadable: {e}" for e in errors]))
    print("ALL TARGETS MET" if ok else "SOME TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

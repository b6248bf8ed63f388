"""Two evaluations of graphs on the same questions and sample seeds, side by side: a row per
run, the ratios of the second to the first, and the paired accuracy difference (second minus
first) with its 95% interval and the exact McNemar p-value."""

from __future__ import annotations

from tts_opt.evaluation import EvalReport
from tts_opt.evaluation.stats import mcnemar_exact, paired_difference_interval


def print_rows(*reports: EvalReport) -> None:
    print(
        f"{'run':<28}{'acc':>7}{'tokens/q':>10}{'GFLOPs/q':>10}{'p50 s':>8}{'p95 s':>8}"
        f"{'wall s':>8}{'errors':>7}"
    )
    for report in reports:
        latency = report.latency
        p50, p95 = (latency.p50_s, latency.p95_s) if latency else (float("nan"),) * 2
        print(
            f"{report.graph:<28}{report.accuracy.value:>7.1%}{report.mean_tokens:>10.0f}"
            f"{report.mean_flops / 1e9:>10.0f}{p50:>8.1f}{p95:>8.1f}{report.wall_s:>8.0f}"
            f"{report.errors:>7}"
        )


def print_paired(first: EvalReport, second: EvalReport) -> None:
    """Ratios and the paired difference of `second` against `first`."""
    if first.latency and second.latency:
        print(
            f"{second.graph} / {first.graph}: tokens {second.mean_tokens / first.mean_tokens:.2f}"
            f", FLOPs {second.mean_flops / first.mean_flops:.2f}, p50 "
            f"{second.latency.p50_s / first.latency.p50_s:.2f}, p95 "
            f"{second.latency.p95_s / first.latency.p95_s:.2f}, wall "
            f"{second.wall_s / first.wall_s:.2f} (speed-up {first.wall_s / second.wall_s:.2f}x)"
        )
    pairs = list(zip(second.results, first.results, strict=True))
    assert all(s.id == f.id for s, f in pairs), "the runs must answer the same questions"
    wins = sum(s.correct and not f.correct for s, f in pairs)
    losses = sum(f.correct and not s.correct for s, f in pairs)
    low, high = paired_difference_interval(wins, losses, len(pairs))
    print(
        f"accuracy {second.graph} - {first.graph}: {(wins - losses) / len(pairs):+.1%} (95% CI "
        f"{low:+.1%} to {high:+.1%}), McNemar p = {mcnemar_exact(wins, losses):.3g}; {wins} "
        f"questions right only in the second, {losses} only in the first, n = {len(pairs)}"
    )

"""Evaluate fraud scoring and the hard rules on synthetic worlds whose fraud is known.

``python -m bench.fraud_eval [--seeds 20] [--first-seed 1] [--strength blatant|subtle|none|all]
[--jobs 2] [--window N] [--cache DIR]``

For every seed and strength a world is generated (``fraud.synthetic.generate_world``: 50
partners, 24 months), loaded into a throwaway SQLite database (``db.create_all()``) and scored
month by month as the scheduled job would have seen it: for month ``t`` the cube holds the
claims received up to that month only (``load_cube(until=...)``), so no measure can look ahead
(the repeat-repair count would otherwise see next month's repeats). The hard rules run once
over the whole history; each hit is matched to the claim it names.

Partner-level figures (mean over seeds unless marked pooled):

* precision: fraud partners flagged in or after their onset month / every partner ever flagged
  (an honest or unusual partner flagged at any month, or a fraudster flagged before its onset,
  is a false flag);
* recall within the allowed delay (blatant: first flag by onset + 2, i.e. within 3 months
  counting the onset month as month 1; subtle: by onset + 5), over medium and large fraudsters
  with a statistical pattern; the same with no delay limit; the median delay in months
  (pooled); and a combined recall where a hard-rule fraudster also counts as caught when one
  of its constructed violations is hit by a rule in time;
* the small fraudster (one per world, about 5 claims a month) is reported on its own: the
  documented limit of what volume can prove;
* false flags per year: share of honest and unusual partners flagged at least once in months
  12-23, of honest small partners, and which unusual profiles were ever flagged;
* per pattern (pooled): recall, median delay, top reason;
* top reason: at a statistical fraudster's first flag after onset, does ``top_signal`` name
  what was injected (doa_inflation: doa_rate, late_doa or onset; parts_padding:
  parts_per_repair or part_cost; premium_swap: premium_parts or part_cost; labor_padding:
  labor; repeat_churn: repeat_repairs);
* hard-rule precision: hits naming a claim built to break a rule / all hits (honest data-entry
  noise counts as false positive); hard-rule recall over the constructed violations.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from fraud.synthetic import RULE_PATTERNS, STATISTICAL_PATTERNS

STRENGTH_CHOICES = ("blatant", "subtle", "none", "all")
ALLOWED_DELAY = {"blatant": 3, "subtle": 6, "none": 0}  # months, onset month counted as 1
FALSE_FLAG_MONTHS = 12  # false flags are counted over the last year of the world
EXPECTED_SIGNALS = {
    "doa_inflation": {"doa_rate", "late_doa", "onset"},
    "parts_padding": {"parts_per_repair", "part_cost"},
    "premium_swap": {"premium_parts", "part_cost"},
    "labor_padding": {"labor"},
    "repeat_churn": {"repeat_repairs"},
}
TARGETS = {
    "precision": 0.90,  # blatant
    "recall_blatant": 0.90,
    "recall_subtle": 0.70,
    "false_flags": 0.05,
    "false_flags_small": 0.02,
    "rule_precision": 0.99,
    "top_reason": 0.90,
}


# --------------------------------------------------------------------------------------------
# One world (runs in a worker process)
# --------------------------------------------------------------------------------------------


def evaluate_world(seed: int, strength: str, window: int | None,
                   cache: str | None = None) -> dict[str, Any]:
    """Generate, load, score every month and check the rules; return plain records.

    With ``cache`` (a folder), what scoring reads -- the cube ``load_cube`` returned at every
    month, exactly -- and the world's truth and rule hits are kept per (seed, strength) and
    reused on the next run, so only the scoring itself runs again: the same measurement,
    minus the generation and the database, for iterating on ``fraud.scoring``.
    """
    import pickle

    from fraud.scoring import score_cube

    path = Path(cache) / f"{strength}-{seed}.pickle" if cache else None
    if path is not None and path.exists():
        started = time.perf_counter()
        with path.open("rb") as stream:
            stored = pickle.load(stream)
        cubes = stored.pop("cubes")
        result = _score_world(stored, cubes, score_cube, window)
        elapsed = time.perf_counter() - started
        result["timings"] = {**stored["timings"], "score": elapsed, "total": elapsed,
                             "cached": 1.0}
        return result
    result, cubes = _build_world(seed, strength)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp")
        with partial.open("wb") as stream:
            pickle.dump({**result, "cubes": cubes}, stream, protocol=pickle.HIGHEST_PROTOCOL)
        partial.replace(path)
    step = time.perf_counter()
    scored = _score_world(result, cubes, score_cube, window)
    scored["timings"] = {**result["timings"], "score": time.perf_counter() - step}
    scored["timings"]["total"] = sum(scored["timings"][key] for key in
                                     ("generate", "load", "rules", "cubes", "score"))
    return scored


def _score_world(result: dict[str, Any], cubes: list, score_cube: Any,
                 window: int | None) -> dict[str, Any]:
    """Score each month's cube; the partners' records with the months they were flagged."""
    options = {"window": window} if window else {}
    flags: dict[str, dict[int, str | None]] = {p["code"]: {} for p in result["partners"]}
    for month_index, cube in enumerate(cubes):
        for verdict in score_cube(cube, as_of=len(cube.months) - 1, **options):
            if verdict.verdict == "flag":
                flags[verdict.partner][month_index] = verdict.top_signal
    partners = [{**p, "flags": flags[p["code"]]} for p in result["partners"]]
    return {**result, "partners": partners}


def _build_world(seed: int, strength: str) -> tuple[dict[str, Any], list]:
    """Generate and load a world; its cube as of every month, the truth and the rule hits."""
    from sqlalchemy import select, text

    from bench.import_purchases import bench_app
    from common.extensions import db
    from fraud.facts import load_cube
    from fraud.rules import find_rule_hits
    from fraud.synthetic import generate_world, load_world
    from partners.models import HistoricRepair

    timings: dict[str, float] = {}
    started = time.perf_counter()
    world = generate_world(seed, strength=strength)
    timings["generate"] = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="aftercare-fraud-eval-") as tmp:
        app = bench_app("sqlite:///" + str(Path(tmp) / "world.sqlite3"))
        with app.app_context():
            db.create_all()
            db.session.execute(
                text("INSERT INTO audit_chain_head (id, last_seq, last_hash) VALUES (1, 0, :h)"),
                {"h": "0" * 64})
            db.session.commit()
            step = time.perf_counter()
            load_world(world)
            timings["load"] = time.perf_counter() - step
            step = time.perf_counter()
            hits = find_rule_hits()
            keys = {f"history:{row.id}": (row.partner_code, row.serial_number, row.received_date)
                    for row in db.session.execute(select(
                        HistoricRepair.id, HistoricRepair.partner_code,
                        HistoricRepair.serial_number, HistoricRepair.received_date))}
            timings["rules"] = time.perf_counter() - step
            step = time.perf_counter()
            codes = sorted(world.truth)
            cubes = []
            for month in world.months:
                cube = load_cube(until=month, partners=codes)
                if cube.months and cube.months[-1] != month:
                    raise RuntimeError(f"cube ends at {cube.months[-1]}, expected {month}")
                cubes.append(cube)
            timings["cubes"] = time.perf_counter() - step
            db.session.remove()
            db.engine.dispose()
    rule_hits = []
    for hit in hits:
        key = keys.get(hit.claim_ref)
        rule_hits.append({
            "rule": hit.rule, "partner": hit.partner,
            "truth": world.rule_truth.get(key) if key else None,
            "noise": bool(key and key in world.noise),
            "month": world.month_index(key[2]) if key else None,
        })
    hit_keys = {keys[hit.claim_ref] for hit in hits if hit.claim_ref in keys}
    violations = [{"partner": key[0], "rule": rule, "month": world.month_index(key[2]),
                   "hit": key in hit_keys} for key, rule in world.rule_truth.items()]
    partners = [{
        "code": code, "kind": truth.kind, "profile": truth.profile, "size": truth.size,
        "patterns": list(truth.patterns), "onset": truth.onset,
        "mean_monthly_claims": truth.mean_monthly_claims,
    } for code, truth in world.truth.items()]
    return {"seed": seed, "strength": strength, "months": len(world.months),
            "claims": len(world.claims), "partners": partners, "rule_hits": rule_hits,
            "violations": violations, "timings": timings}, cubes


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def _first_flag_from(partner: dict, month: int) -> int | None:
    months = [t for t in partner["flags"] if t >= month]
    return min(months) if months else None


def _rule_detection(result: dict, partner: dict) -> int | None:
    """First month a constructed violation of this partner was hit by a rule."""
    months = [v["month"] for v in result["violations"]
              if v["partner"] == partner["code"] and v["hit"]]
    return min(months) if months else None


def _is_statistical(partner: dict) -> bool:
    return any(p in STATISTICAL_PATTERNS for p in partner["patterns"])


def _has_rule_pattern(partner: dict) -> bool:
    return any(p in RULE_PATTERNS for p in partner["patterns"])


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _median(values: list[int]) -> float | None:
    return statistics.median(values) if values else None


def world_metrics(result: dict) -> dict[str, Any]:
    """Per-world figures, plus pooled records for the per-pattern and delay tables."""
    strength = result["strength"]
    allowed = ALLOWED_DELAY[strength]
    months = result["months"]
    year = range(max(0, months - FALSE_FLAG_MONTHS), months)  # months 12-23 of 24
    partners = result["partners"]
    fraud = [p for p in partners if p["kind"] == "fraud"]
    innocent = [p for p in partners if p["kind"] != "fraud"]
    true_flags = [p for p in fraud if _first_flag_from(p, p["onset"]) is not None]
    false_flags = [p for p in innocent if p["flags"]]
    early_flags = [p for p in fraud if any(t < p["onset"] for t in p["flags"])]
    flagged = len(true_flags) + len(false_flags) + len(early_flags)
    detections = []
    for p in fraud:
        first = _first_flag_from(p, p["onset"])
        rule_first = _rule_detection(result, p) if _has_rule_pattern(p) else None
        rule_first = rule_first if rule_first is None or rule_first >= p["onset"] else p["onset"]
        combined = min((t for t in (first, rule_first) if t is not None), default=None)
        detections.append({
            "seed": result["seed"], "code": p["code"], "patterns": p["patterns"],
            "size": p["size"], "mean": p["mean_monthly_claims"],
            "statistical": _is_statistical(p), "rule_pattern": _has_rule_pattern(p),
            "delay": None if first is None else first - p["onset"] + 1,
            "rule_delay": None if rule_first is None else rule_first - p["onset"] + 1,
            "combined_delay": None if combined is None else combined - p["onset"] + 1,
            "top_signal": p["flags"][first] if first is not None else None,
        })
    main = [d for d in detections if d["size"] != "small" and d["statistical"]]
    everyone = [d for d in detections if d["size"] != "small"]

    def within(ds: list[dict], key: str = "delay") -> float | None:
        if not ds:
            return None
        return sum(1 for d in ds if d[key] is not None and d[key] <= allowed) / len(ds)

    def share_flagged(group: list[dict]) -> float | None:
        if not group:
            return None
        return sum(1 for p in group if any(t in year for t in p["flags"])) / len(group)

    honest_small = [p for p in innocent if p["kind"] == "honest" and p["size"] == "small"]
    hits = result["rule_hits"]
    violations = result["violations"]
    return {
        "precision": len(true_flags) / flagged if flagged else None,
        "recall": within(main),
        "recall_any": (sum(1 for d in main if d["delay"] is not None) / len(main)
                       if main else None),
        "recall_combined": within(everyone, "combined_delay"),
        "false_flags": share_flagged(innocent),
        "false_flags_small": share_flagged(honest_small),
        "false_flag_records": [
            {"kind": p["kind"], "profile": p["profile"] or p["size"], "size": p["size"],
             "signal": p["flags"][min(p["flags"])], "in_year": any(t in year for t in p["flags"])}
            for p in false_flags],
        "early_flags": [{"patterns": p["patterns"], "signal": p["flags"][min(p["flags"])]}
                        for p in early_flags],
        "unusual_flagged": [p["profile"] for p in innocent if p["kind"] == "unusual"
                            and p["flags"]],
        "detections": detections,
        "rule_precision": (sum(1 for h in hits if h["truth"]) / len(hits)) if hits else None,
        "rule_recall": (sum(1 for v in violations if v["hit"]) / len(violations)
                        if violations else None),
        "rule_hits": hits,
        "timings": result["timings"],
        "claims": result["claims"],
        "partners": len(partners),
        "months": months,
        "unusual": sum(1 for p in partners if p["kind"] == "unusual"),
        "noise_hits": sum(1 for h in hits if h["noise"]),
    }


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _fmt(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1%}" if percent else f"{value:.2f}"


def _status(value: float | None, target: float, *, at_most: bool = False) -> str:
    if value is None:
        return ""
    met = value <= target if at_most else value >= target
    return "met" if met else "**missed**"


def report(strength: str, metrics: list[dict], window: int) -> str:
    """A markdown section for one strength, ready for the README."""
    allowed = ALLOWED_DELAY[strength]
    shape = f"{metrics[0]['partners']} partners x {metrics[0]['months']} months"
    lines = [f"### {strength}: {len(metrics)} seeds, {shape}, window {window} months", ""]
    lines += ["| metric | value | target | |", "|---|---|---|---|"]

    def row(name: str, value: str, target: str = "", status: str = "") -> None:
        lines.append(f"| {name} | {value} | {target} | {status} |")

    detections = [d for m in metrics for d in m["detections"]]
    main = [d for d in detections if d["size"] != "small" and d["statistical"]]
    small = [d for d in detections if d["size"] == "small"]
    if strength != "none":
        precision = _mean(m["precision"] for m in metrics)
        recall = _mean(m["recall"] for m in metrics)
        recall_target = TARGETS["recall_blatant" if strength == "blatant" else "recall_subtle"]
        row("precision (partners)", _fmt(precision),
            f">= {TARGETS['precision']:.2f}" if strength == "blatant" else "",
            _status(precision, TARGETS["precision"]) if strength == "blatant" else "")
        row(f"recall within {allowed} months (medium/large, statistical patterns)",
            _fmt(recall), f">= {recall_target:.2f}", _status(recall, recall_target))
        row("recall, no delay limit", _fmt(_mean(m["recall_any"] for m in metrics)))
        delays = [d["delay"] for d in main if d["delay"] is not None]
        row("median detection delay, months (onset month = 1; pooled)",
            _fmt(_median(delays)) if delays else "n/a")
        row(f"recall within {allowed} months incl. hard-rule hits (all medium/large)",
            _fmt(_mean(m["recall_combined"] for m in metrics)))
        caught_small = [d for d in small if d["delay"] is not None]
        row("small fraudster (~3-8 claims/month) flagged after onset (pooled)",
            f"{len(caught_small)} of {len(small)}", "documented limit")
        early = [e for m in metrics for e in m["early_flags"]]
        row("fraudsters flagged before their onset (pooled, counted as false flags)",
            str(len(early)) + (f" ({_counter_text(Counter(e['signal'] for e in early))})"
                               if early else ""))
    false_flags = _mean(m["false_flags"] for m in metrics)
    small_flags = _mean(m["false_flags_small"] for m in metrics)
    row("false flags / year: honest + unusual partners flagged in months 12-23",
        _fmt(false_flags, True), f"<= {TARGETS['false_flags']:.0%}",
        _status(false_flags, TARGETS["false_flags"], at_most=True))
    row("false flags / year: honest small partners", _fmt(small_flags, True),
        f"<= {TARGETS['false_flags_small']:.0%}",
        _status(small_flags, TARGETS["false_flags_small"], at_most=True))
    unusual = Counter(p for m in metrics for p in m["unusual_flagged"])
    row("unusual partners ever flagged (pooled, by profile)",
        f"{sum(unusual.values())} of {sum(m['unusual'] for m in metrics)}"
        + (f": {_counter_text(unusual)}" if unusual else ""), "0")
    records = [r for m in metrics for r in m["false_flag_records"]]
    if records:
        row("false-flag profiles, any month (pooled: who / top signal)",
            _counter_text(Counter(f"{r['kind']} {r['profile']} / {r['signal']}"
                                  for r in records)))
    if strength != "none":
        judged = [d for d in main if d["delay"] is not None]
        right = [d for d in judged if d["top_signal"] in _expected(d["patterns"])]
        accuracy = len(right) / len(judged) if judged else None
        row("top reason names the injected pattern (caught statistical fraudsters, pooled)",
            f"{_fmt(accuracy, True)} ({len(right)}/{len(judged)})",
            f">= {TARGETS['top_reason']:.0%}", _status(accuracy, TARGETS["top_reason"]))
    hits = [h for m in metrics for h in m["rule_hits"]]
    rule_precision = _mean(m["rule_precision"] for m in metrics)
    row("hard-rule precision (claims)", _fmt(rule_precision, True) + f" ({len(hits)} hits)",
        f">= {TARGETS['rule_precision']:.0%}",
        _status(rule_precision, TARGETS["rule_precision"]))
    engine = [h for h in hits if not h["noise"]]
    row("hard-rule precision leaving out the deliberate data-entry noise (pooled)",
        _fmt(sum(1 for h in engine if h["truth"]) / len(engine), True) if engine else "n/a",
        "", f"{len(hits) - len(engine)} noise hits")
    row("hard-rule recall (constructed violations)",
        _fmt(_mean(m["rule_recall"] for m in metrics), True))
    by_rule = Counter((h["rule"], "true" if h["truth"] else "noise" if h["noise"] else "false")
                      for h in hits)
    if by_rule:
        row("hard-rule hits by rule (pooled)", ", ".join(
            f"{rule} {outcome} {count}" for (rule, outcome), count in sorted(by_rule.items())))
    timing = {key: _mean(m["timings"].get(key, 0.0) for m in metrics)
              for key in ("total", "generate", "load", "rules", "cubes", "score")}
    cached = sum(1 for m in metrics if m["timings"].get("cached"))
    row("wall time per seed (s)" + (f"; {cached} worlds' cubes from the cache, their "
                                   "generate to cubes times from when it was built"
                                   if cached else ""),
        f"{timing['total']:.1f} (generate {timing['generate']:.1f}, load {timing['load']:.1f}, "
        f"rules {timing['rules']:.1f}, cubes of 24 months {timing['cubes']:.1f}, "
        f"score 24 months {timing['score']:.1f}); "
        f"{_mean(m['claims'] for m in metrics):,.0f} claims")
    if strength != "none":
        lines += ["", "Per pattern (pooled over seeds, medium/large fraudsters; a subtle "
                  "fraudster counts under both its patterns):", "",
                  f"| pattern | fraudsters | recall <= {allowed} mo | recall any | "
                  f"median delay | top reason names this pattern | "
                  f"caught by hard rules <= {allowed} mo |",
                  "|---|---|---|---|---|---|---|"]
        for pattern in STATISTICAL_PATTERNS + RULE_PATTERNS:
            group = [d for d in detections if pattern in d["patterns"] and d["size"] != "small"]
            if not group:
                continue
            caught = [d for d in group if d["delay"] is not None]
            in_time = [d for d in caught if d["delay"] <= allowed]
            delays = [d["delay"] for d in caught]
            if pattern in STATISTICAL_PATTERNS:
                ok = [d for d in caught if d["top_signal"] in EXPECTED_SIGNALS[pattern]]
                top = f"{len(ok)}/{len(caught)}"
            else:
                top = _counter_text(Counter(d["top_signal"] for d in caught)) or "-"
            ruled = ([d for d in group if d["rule_delay"] is not None
                      and d["rule_delay"] <= allowed] if pattern in RULE_PATTERNS else None)
            lines.append(
                f"| {pattern} | {len(group)} | {len(in_time) / len(group):.2f} | "
                f"{len(caught) / len(group):.2f} | {_fmt(_median(delays))} | {top} | "
                f"{'-' if ruled is None else f'{len(ruled)}/{len(group)}'} |")
        late = [d for d in detections if d["size"] != "small"
                and (d["combined_delay"] is None or d["combined_delay"] > allowed)]
        if late:
            lines += ["", f"Medium/large fraudsters not caught within {allowed} months "
                      f"(flag or hard-rule hit):", ""]
            lines += [f"- seed {d['seed']} {d['code']}: {' + '.join(d['patterns'])}, "
                      f"{d['mean']:.0f} claims/month, "
                      + (f"flagged in month {d['delay']} after onset"
                         if d["delay"] is not None else "never flagged")
                      for d in sorted(late, key=lambda d: (d["seed"], d["code"]))]
    return "\n".join(lines)


def _expected(patterns: list[str]) -> set[str]:
    expected: set[str] = set()
    for pattern in patterns:
        expected |= EXPECTED_SIGNALS.get(pattern, set())
    return expected


def _counter_text(counter: Counter) -> str:
    return ", ".join(f"{name} x{count}" for name, count in counter.most_common())


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def run(seeds: list[int], strengths: list[str], jobs: int, window: int | None,
        cache: str | None = None) -> int:
    """Evaluate every (seed, strength) in worker processes and print one table per strength."""
    from fraud.scoring import WINDOW_MONTHS

    tasks = [(seed, strength) for strength in strengths for seed in seeds]
    results: dict[str, list[dict]] = {strength: [] for strength in strengths}
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(evaluate_world, seed, strength, window, cache):
                   (seed, strength)
                   for seed, strength in tasks}
        for future in as_completed(futures):
            seed, strength = futures[future]
            result = future.result()
            results[strength].append(result)
            print(f"  {strength:<8} seed {seed:>3}: {result['claims']:,} claims, "
                  f"{result['timings']['total']:.1f} s", flush=True)
    print(f"\n{len(tasks)} worlds in {time.perf_counter() - started:.0f} s "
          f"({jobs} jobs)\n")
    for strength in strengths:
        ordered = sorted(results[strength], key=lambda r: r["seed"])
        print(report(strength, [world_metrics(r) for r in ordered], window or WINDOW_MONTHS))
        print()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the evaluation."""
    parser = argparse.ArgumentParser(prog="python -m bench.fraud_eval",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="worlds per strength")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--strength", choices=STRENGTH_CHOICES, default="all")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--cache", default=None, metavar="DIR",
                        help="keep each world's monthly cubes here and reuse them: only the "
                             "scoring runs again (for iterating on fraud.scoring)")
    parser.add_argument("--window", type=int, default=None,
                        help="scoring window in months (default: fraud.scoring's)")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.jobs < 1 or (args.window is not None and args.window < 1):
        parser.error("--seeds, --jobs and --window must be at least 1")
    strengths = ["blatant", "subtle", "none"] if args.strength == "all" else [args.strength]
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    return run(seeds, strengths, args.jobs, args.window, args.cache)


if __name__ == "__main__":
    raise SystemExit(main())

"""The streaming accumulator behind ``aggregate``: the same numbers, bit for bit, as exact means over
lists (``math.fsum(values) / len(values)``)."""

from __future__ import annotations

import math
import random

from pixeljury.core.accumulator import ExactMean
from pixeljury.scoring import BenchAccumulator, aggregate, mean


def running(values) -> float | None:
    return ExactMean().update_many(values).compute()


def fmean(values) -> float | None:
    vals = list(values)
    return math.fsum(vals) / len(vals) if vals else None


def test_exact_mean_equals_fsum_of_the_list_bit_for_bit():
    rng = random.Random(3)
    pools = [
        [0.0, 60.0, 100.0],
        [0.0, 60.0, 100.0, 30.0, 80.0, 200 / 3, 160 / 3, 55.0, 77.5, 86.66666666666667],
        None,  # arbitrary floats of mixed magnitude
    ]
    for pool in pools:
        for _ in range(300):
            n = rng.randint(1, 400)
            vals = [rng.choice(pool) for _ in range(n)] if pool else [rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-8, 8)
                                                                      for _ in range(n)]
            assert running(vals).hex() == fmean(vals).hex()
            rng.shuffle(vals)
            assert running(vals).hex() == fmean(vals).hex()


def test_exact_mean_edge_cases():
    assert running([]) is None and ExactMean().n == 0
    assert running([60]) == 60.0 and isinstance(running([60]), float)  # ints are taken as floats
    assert running([100, 60.0, 0]) == fmean([100, 60.0, 0])
    assert running([0.1] * 10) == 0.1  # the exact sum, rounded once; sum() on 3.11 gives 0.9999999999999999
    assert running([1e100, 1.0, -1e100]) == 1.0 / 3  # left to right, a float sum loses the 1.0
    assert running([math.inf, 1.0]) == math.inf
    assert math.isnan(running([math.inf, -math.inf])) and math.isnan(running([1.0, math.nan]))


def _image(rng: random.Random) -> dict:
    dims = rng.sample(["Quality", "Aesthetics", "Alignment"], rng.randint(0, 3))
    level3 = {d: {l2: {l3: rng.choice([None, 0.0, 60.0, 100.0]) for l3 in ("a", "b", "c")} for l2 in ("X", "Y")}
              for d in dims}
    level2 = {d: {l2: mean(v.values()) for l2, v in l2s.items()} for d, l2s in level3.items()}
    level1 = {d: mean(v.values()) for d, v in level2.items()}
    return {
        "scores": {"total": mean(level1.values()), "level1": level1, "level2": level2, "level3": level3},
        "dimensions": {d: {"status": rng.choice(["scored", "parse_failure", "all_na", "error", "other"]),
                           "truncated": rng.random() < 0.2, "n_na": rng.randint(0, 2),
                           "invalid": [{}] * rng.randint(0, 1)} for d in dims},
    }


def _reference(images):
    """What aggregate() is defined to be, computed over lists: exact means (fsum / len)."""
    l1, l2, l3, totals = {}, {}, {}, []
    for rec in images:
        s = rec["scores"]
        if s["total"] is not None:
            totals.append(s["total"])
        for d, v in s["level1"].items():
            if v is not None:
                l1.setdefault(d, []).append(v)
        for d, l2s in s["level2"].items():
            for k, v in l2s.items():
                if v is not None:
                    l2.setdefault(d, {}).setdefault(k, []).append(v)
        for d, l2s in s["level3"].items():
            for k, l3s in l2s.items():
                for f, v in l3s.items():
                    if v is not None:
                        l3.setdefault(d, {}).setdefault(k, {}).setdefault(f, []).append(v)
    return {
        "total": fmean(totals), "level1": {d: fmean(v) for d, v in l1.items()},
        "level2": {d: {k: fmean(v) for k, v in x.items()} for d, x in l2.items()},
        "level3": {d: {k: {f: fmean(v) for f, v in y.items()} for k, y in x.items()} for d, x in l3.items()},
        "n_images": len(images), "n_images_scored": len(totals),
    }


def test_accumulator_matches_list_means_and_keeps_first_seen_order():
    rng = random.Random(11)
    images = [_image(rng) for _ in range(500)]
    acc = BenchAccumulator()
    for i, rec in enumerate(images, 1):
        acc.add(rec)
        if i in (1, 250):  # result() mid-stream is the aggregate so far, and does not disturb the rest
            assert acc.result() == aggregate(images[:i])
    got = acc.result().as_dict()
    ref = _reference(images)
    for key, value in ref.items():
        assert got[key] == value, key  # == on floats: bit for bit
    # dict order (it decides the key order of the bench JSON): first image that had a value there
    assert list(got["level1"]) == list(ref["level1"])
    assert [list(v) for v in got["level3"].values()] == [list(v) for v in ref["level3"].values()]
    counts = got["counts"]
    for d in counts:
        infos = [r["dimensions"][d] for r in images if d in r["dimensions"]]
        assert counts[d] == {
            "requests": len(infos), "scored": sum(i["status"] == "scored" for i in infos),
            "parse_failures": sum(i["status"] == "parse_failure" for i in infos),
            "all_na": sum(i["status"] == "all_na" for i in infos), "errors": sum(i["status"] == "error" for i in infos),
            "truncated": sum(i["truncated"] for i in infos), "na": sum(i["n_na"] for i in infos),
            "invalid": sum(len(i["invalid"]) for i in infos),
        }


def test_aggregate_is_the_accumulator():
    rng = random.Random(5)
    images = [_image(rng) for _ in range(50)]
    acc = BenchAccumulator()
    for rec in images:
        acc.add(rec)
    assert aggregate(iter(images)) == acc.result()  # a one-shot iterator is enough: nothing is kept

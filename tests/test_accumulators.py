"""Accumulators: one pass, any chunking and shards merged in any order give the same bits.

Seeded random data (no hypothesis); every state crosses a JSON round trip, as it would between
processes or Ray workers. Floats are compared by ``float.hex``, arrays by their bytes.
"""

from __future__ import annotations

import json
import math
import random
from fractions import Fraction

import numpy as np
import pytest

from pixeljury.core.accumulator import Accumulator, AccumulatorStateError, ExactMean
from pixeljury.metrics.fid_math import FeatureAccumulator, feature_accumulator, frechet_distance, kernel_distance
from pixeljury.scoring import BenchAccumulator, aggregate, image_total, score_dimension

TAXONOMY = {
    "Quality": {"Realism": ["Physical Logic", "Material Texture"], "Detail": ["Noise", "Edge Clarity", "Naturalness"]},
    "Aesthetics": {"Composition": ["Composition"], "Lighting": ["Lighting", "Shadows"]},
    "Alignment": {"Attributes": ["Color", "Count", "Shape"], "Text": ["Text Rendering"]},
    "Creative Generation": {"Style": ["Style Control", "Imagination"]},
}


def travel(acc: Accumulator) -> Accumulator:
    """``acc`` sent to another process and back: state -> JSON text -> state -> accumulator."""
    return type(acc).from_state(json.loads(json.dumps(acc.state())))


def bits(obj):
    """Floats as their hex, recursively: == on the result is bit-for-bit equality."""
    if isinstance(obj, float):
        return obj.hex()
    if isinstance(obj, dict):
        return {k: bits(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [bits(v) for v in obj]
    return obj


def ordered(bench) -> str:
    """Bench result with its key order (the bench JSON's key order) and every float's bits."""
    return json.dumps(bits(bench.as_dict()))


def unordered(bench) -> str:
    return json.dumps(bits(bench.as_dict()), sort_keys=True)


def realistic_record(rng: random.Random) -> dict:
    """A per-image record as the pipeline writes it: facets 0/1/2, N/A and invalid answers scored by
    ``score_dimension``, per-image means by ``image_total``, statuses and truncation flags."""
    dims = rng.sample(sorted(TAXONOMY), rng.randint(0, len(TAXONOMY)))
    level1, level2, level3, infos = {}, {}, {}, {}
    for d in dims:
        status = rng.choices(["scored", "parse_failure", "all_na", "error"], [8, 1, 1, 1])[0]
        info = {"status": status, "truncated": rng.random() < 0.1, "n_na": 0, "invalid": []}
        if status in ("scored", "all_na"):
            answers = {l2: {l3: {"score": "N/A" if status == "all_na" else
                                 rng.choices([0, 1, 2, "2", "N/A", "high"], [3, 4, 4, 1, 2, 1])[0]}
                            for l3 in l3s}
                       for l2, l3s in TAXONOMY[d].items()}
            ds = score_dimension(answers)
            level1[d], level2[d], level3[d] = ds.l1, ds.l2, ds.l3
            info.update(n_na=ds.n_na, invalid=ds.invalid)
        infos[d] = info
    scores = {"total": image_total(level1), "level1": level1, "level2": level2, "level3": level3}
    return {"scores": scores if rng.random() > 0.05 else None, "dimensions": infos}


def bench_of(records) -> BenchAccumulator:
    return BenchAccumulator().update_many(records)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bench_whole_chunked_and_merged_shards_are_bit_identical(seed):
    rng = random.Random(seed)
    images = [realistic_record(rng) for _ in range(rng.randint(40, 70))]
    whole = aggregate(images)
    assert whole.n_images == len(images) and whole.total is not None
    want = ordered(whole)

    # Chunked: every split into two, the second chunk's state travelling; and one accumulator fed in chunks.
    for i in range(len(images) + 1):
        first = bench_of(images[:i])
        assert ordered(first.merge(travel(bench_of(images[i:]))).compute()) == want, i
    fed = BenchAccumulator()
    for start in range(0, len(images), 7):
        fed.update_many(images[start:start + 7])
        assert ordered(fed.compute()) == ordered(aggregate(images[:start + 7]))  # compute() mid-stream
    assert ordered(fed.compute()) == want

    for k in (2, 3, 5, 8):
        # k contiguous shards merged in stream order: same numbers and same key order.
        cuts = sorted(rng.sample(range(1, len(images)), k - 1))
        shards = [images[a:b] for a, b in zip([0, *cuts], [*cuts, len(images)])]
        states = [travel(bench_of(s)).state() for s in shards]
        assert ordered(BenchAccumulator.merged(states).compute()) == want
        assert ordered(BenchAccumulator.merged(travel(bench_of(s)) for s in shards).compute()) == want
        # Any order, and shards of interleaved images: the same bits (key order may differ).
        rng.shuffle(states)
        assert unordered(BenchAccumulator.merged(states).compute()) == unordered(whole)
        assignment = [rng.randrange(k) for _ in images]
        scattered = [bench_of([r for r, a in zip(images, assignment) if a == j]) for j in range(k)]
        rng.shuffle(scattered)
        tree = travel(scattered[0])
        for part in scattered[1:]:
            tree = travel(tree.merge(travel(part)))
        assert unordered(tree.compute()) == unordered(whole)


def test_bench_means_are_exact_fsum_means_not_left_to_right_sums():
    # The per-image totals of the golden run's "painter-faithful": sum() left to right rounds up
    # twice; the exact mean rounds once.
    totals = [73.66666666666667, 77.19444444444446, 90.66666666666667, 93.77777777777777, 79.96825396825398]
    exact = float(sum(map(Fraction, totals)) / len(totals))
    assert exact == 83.0547619047619 and sum(totals) / len(totals) == 83.05476190476192
    records = [{"scores": {"total": t, "level1": {}, "level2": {}, "level3": {}}} for t in totals]
    for order in (records, records[::-1], records[2:] + records[:2]):
        assert aggregate(order).total.hex() == exact.hex()
    halves = bench_of(records[3:]).merge(bench_of(records[:3]).state())
    assert halves.compute().total.hex() == exact.hex()


def test_bench_hand_computed():
    a = {"scores": {"total": 60.0, "level1": {"Quality": 60.0}, "level2": {"Quality": {"Detail": 60.0}},
                    "level3": {"Quality": {"Detail": {"Noise": 60.0, "Edge Clarity": None}}}},
         "dimensions": {"Quality": {"status": "scored", "n_na": 1, "invalid": [], "truncated": True}}}
    b = {"scores": {"total": 50.0, "level1": {"Quality": 100.0, "Aesthetics": 0.0},
                    "level2": {"Quality": {"Detail": 100.0}, "Aesthetics": {"Lighting": 0.0}},
                    "level3": {"Quality": {"Detail": {"Noise": 100.0, "Edge Clarity": 100.0}},
                               "Aesthetics": {"Lighting": {"Lighting": 0.0}}}},
         "dimensions": {"Quality": {"status": "scored"}, "Aesthetics": {"status": "scored", "invalid": [{}]}}}
    c = {"scores": None, "dimensions": {"Alignment": {"status": "parse_failure"}}}
    for got in (aggregate([a, b, c]), bench_of([a]).merge(travel(bench_of([b, c]))).compute(),
                BenchAccumulator.merged([bench_of([c]).state(), bench_of([b]), bench_of([a])]).compute()):
        assert got.total == 55.0 and got.n_images == 3 and got.n_images_scored == 2
        assert got.l1 == {"Quality": 80.0, "Aesthetics": 0.0}
        assert got.l3["Quality"]["Detail"] == {"Noise": 80.0, "Edge Clarity": 100.0}
        assert got.counts["Quality"] == {"requests": 2, "scored": 2, "parse_failures": 0, "all_na": 0, "errors": 0,
                                         "truncated": 1, "na": 1, "invalid": 0}
        assert got.counts["Aesthetics"]["invalid"] == 1 and got.counts["Alignment"]["parse_failures"] == 1


def test_exact_mean_merges_to_fsum_over_random_splits():
    rng = random.Random(7)
    for _ in range(200):
        vals = [rng.uniform(-1, 1) * 10 ** rng.randint(-20, 20) for _ in range(rng.randint(1, 60))]
        want = (math.fsum(vals) / len(vals)).hex()
        parts = [ExactMean() for _ in range(rng.randint(1, 6))]
        for v in vals:
            rng.choice(parts).update(v)
        rng.shuffle(parts)
        assert ExactMean.merged(travel(p).state() for p in parts).compute().hex() == want
    twice = ExactMean().update_many([1.0, 2.5])
    assert twice.merge(twice).compute() == 1.75 and twice.n == 4  # merging into itself counts twice


def test_states_are_checked():
    with pytest.raises(AccumulatorStateError):
        BenchAccumulator.from_state(ExactMean().state())
    with pytest.raises(AccumulatorStateError):
        ExactMean.from_state({**ExactMean().state(), "state_version": 99})
    with pytest.raises(AccumulatorStateError):
        FeatureAccumulator.from_state({**feature_accumulator(np.ones((2, 3))).state(), "dim": 4})
    with pytest.raises(TypeError):
        BenchAccumulator().merge(ExactMean())


# -- FID / KID ----------------------------------------------------------------------------------


def fid_and_kid(gen: FeatureAccumulator, ref: FeatureAccumulator) -> tuple[str, str, str]:
    kid, std = kernel_distance(gen.features(), ref.features(), num_subsets=5, subset_size=12, seed=1)
    return frechet_distance(*gen.compute(), *ref.compute()).hex(), kid.hex(), std.hex()


def stats_bytes(acc: FeatureAccumulator) -> tuple[bytes, bytes]:
    mu, sigma = acc.compute()
    return mu.tobytes(), sigma.tobytes()


@pytest.mark.parametrize("seed", [0, 1])
def test_fid_and_kid_whole_chunked_and_merged_shards_are_bit_identical(seed):
    rng = np.random.default_rng(seed)
    n, dim = 37, 16
    feats = rng.normal(size=(n, dim)) * rng.uniform(0.1, 10, size=dim)
    ref = feature_accumulator(rng.normal(loc=0.3, size=(29, dim)))
    whole = feature_accumulator(feats)
    want_stats, want = stats_bytes(whole), fid_and_kid(whole, ref)
    assert whole.features().tobytes() == feats.tobytes()  # position keys: the order of the one pass

    for i in range(n + 1):  # every split into two chunks, merged either way round
        first = FeatureAccumulator().add_batch(list(range(i)), feats[:i])
        second = travel(FeatureAccumulator().add_batch(list(range(i, n)), feats[i:]))
        merged = travel(second).merge(first) if i % 2 else first.merge(second)
        assert stats_bytes(merged) == want_stats and fid_and_kid(merged, ref) == want, i

    pyrng = random.Random(seed)
    for k in (2, 3, 6):
        order = list(range(n))
        pyrng.shuffle(order)  # shards of scattered items, each fed in its own order
        shards = [FeatureAccumulator() for _ in range(k)]
        for pos in order:
            pyrng.choice(shards).update((pos, feats[pos]))
        states = [travel(s).state() for s in shards]
        pyrng.shuffle(states)
        merged = FeatureAccumulator.merged(states)
        assert merged.features().tobytes() == feats.tobytes()
        assert stats_bytes(merged) == want_stats and fid_and_kid(merged, ref) == want


def test_fid_accumulator_with_str_keys_and_its_errors():
    rng = np.random.default_rng(3)
    feats = rng.normal(size=(6, 4))
    names = [f"img{i:02d}.png" for i in range(6)]
    a = FeatureAccumulator().add_batch(names[3:], feats[3:])
    b = FeatureAccumulator().add_batch(names[:3], feats[:3])
    assert a.merge(travel(b)).keys() == names and a.features().tobytes() == feats.tobytes()
    with pytest.raises(ValueError, match="added twice|in both shards"):
        a.merge(b)
    with pytest.raises(ValueError, match="expected 4"):
        a.update(("other.png", np.zeros(5)))
    assert FeatureAccumulator.merged([]).features().shape == (0, 0)


def test_fid_and_kid_hand_computed():
    # A square of side 2 around (1, 1) and the same square moved to (2, 2): equal covariances
    # (4/3 on the diagonal), so FID = ||(1, 1)||^2 = 2.
    square = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    gen = FeatureAccumulator().merge(feature_accumulator(square[:2])).merge(
        feature_accumulator(square[2:], keys=[2, 3]).state())
    ref = feature_accumulator(square + 1.0)
    mu, sigma = gen.compute()
    assert mu.tolist() == [1.0, 1.0] and sigma.tolist() == [[4 / 3, 0.0], [0.0, 4 / 3]]
    assert frechet_distance(*gen.compute(), *ref.compute()) == pytest.approx(2.0, abs=1e-12)
    # KID, 1-d, one subset holding both whole sets: k(x, y) = (x y + 1)^3.
    # x = {1, 2}: k(1, 2) = 27 off the diagonal; y = {0, 0}: 1; across: 1. MMD^2 = 27 + 1 - 2 * 1 = 26.
    x = FeatureAccumulator().update_many([(1, [2.0]), (0, [1.0])])
    y = feature_accumulator(np.zeros((2, 1)))
    assert kernel_distance(x.features(), y.features(), num_subsets=1, subset_size=2) == (26.0, 0.0)

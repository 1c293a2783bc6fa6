"""Model-level agreement on the Qwen-Image-Bench Table 2 Overall scores (shared/data/README.md)
against human figures made up here with a known Spearman rho."""

from __future__ import annotations

import csv
import json

import pytest
from _analysis_helpers import agree_results, run_cli
from scipy import stats

# Table 2, Overall column, in the paper's (descending) order.
TABLE2 = {
    "GPT Image 2": 64.69, "Nano Banana 2.0": 59.82, "GPT Image 1.5": 59.65, "Nano Banana Pro": 59.45,
    "Qwen Image 2.0 Pro": 57.84, "Seedream 5.0": 57.22, "Seedream 4.5": 56.78, "Seedream 4.0": 56.21,
    "FLUX 2 Max": 55.33, "FLUX 2 Pro": 54.57, "GPT Image 1": 54.07, "Qwen Image 2512": 52.06,
    "Imagen 4.0 Ultra": 51.99, "HunyuanImage 3.0": 50.81, "Imagen 4.0": 50.29, "Qwen Image": 49.23,
    "Kling Image 2.1": 48.26, "GLM Image": 48.19,
}
# Human rank of each model (1 = best), by Table 2 position. Rank differences d:
# 2,-1,-1,0, 2,-1,-1,0,0, 2,-1,-1,0,0, 2,2,-1,-3  ->  sum d^2 = 36.
HUMAN_RANK = [3, 1, 2, 4, 7, 5, 6, 8, 9, 12, 10, 11, 13, 14, 17, 18, 16, 15]
N = len(TABLE2)
EXPECTED_RHO = 1 - 6 * 36 / (N * (N * N - 1))  # = 1 - 216/5814 = 0.96285


def _discordant_pairs() -> int:
    # Judge order is the Table 2 order, so a pair (i < j) is discordant when humans rank j above i.
    return sum(1 for i in range(N) for j in range(i + 1, N) if HUMAN_RANK[j] < HUMAN_RANK[i])


EXPECTED_TAU = 1 - 4 * _discordant_pairs() / (N * (N - 1))  # no ties on either side


def human_mean(rank: int) -> float:
    return 5.0 - 0.2 * (rank - 1)  # a 1-5 Likert mean, best model 5.0


def write_per_image(path, with_human: bool) -> None:
    """Three images per model whose scores (and ratings) average to the model's figure."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "model", "overall", *(["human"] if with_human else [])])
        for k, (model, overall) in enumerate(TABLE2.items()):
            for j, delta in enumerate((-3.0, 0.5, 2.5)):
                row = [f"{k}-{j}", model, overall + delta]
                if with_human:
                    row.append(human_mean(HUMAN_RANK[k]) + (-0.4, 0.0, 0.4)[j])
                w.writerow(row)


def test_expected_figures_are_what_the_comments_say():
    assert EXPECTED_RHO == pytest.approx(0.962848, abs=1e-6)
    assert _discordant_pairs() == 11


def test_model_level_from_one_per_image_table(tmp_path):
    table = tmp_path / "images.csv"
    write_per_image(table, with_human=True)
    out = tmp_path / "a.json"
    run_cli("agree", str(table), "-H", "human", "-c", "overall", "--level", "both", "--bootstrap", "300",
            "--json", str(out))
    rows = {r["level"]: r for r in json.loads(out.read_text())["results"]}
    model = rows["model"]
    assert model["n"] == N and model["models"] == list(TABLE2)
    assert model["srcc"] == pytest.approx(EXPECTED_RHO, abs=1e-12)
    assert model["krcc"] == pytest.approx(EXPECTED_TAU, abs=1e-12)
    lo, hi = model["ci"]["srcc"]
    assert lo <= model["srcc"] <= hi
    assert rows["sample"]["n"] == 3 * N


def test_model_level_with_a_separate_per_model_human_file(tmp_path):
    scores = tmp_path / "scores.csv"
    write_per_image(scores, with_human=False)
    human = tmp_path / "human.json"
    human.write_text(json.dumps([{"model": m, "expert": human_mean(r)} for m, r in zip(TABLE2, HUMAN_RANK)]))
    out = tmp_path / "a.json"
    run_cli("agree", str(scores), "--human", str(human), "-H", "expert", "--level", "model",
            "--resample", "models", "--bootstrap", "300", "--json", str(out))
    [row] = json.loads(out.read_text())["results"]
    assert row["column"] == "overall"  # "image" is text, "expert" lives in the human file
    assert row["srcc"] == pytest.approx(EXPECTED_RHO, abs=1e-12)
    assert row["krcc"] == pytest.approx(EXPECTED_TAU, abs=1e-12)
    assert row["pairwise_acc"] == pytest.approx((153 - 11) / 153)  # 153 model pairs, no ties
    lo, hi = row["ci"]["srcc"]
    assert lo <= row["srcc"] <= hi


def test_too_few_models_in_every_column_is_an_error(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("model,score,human\nA,1,2\nB,2,3\n")
    proc = run_cli("agree", str(table), "-H", "human", "--level", "model", "--bootstrap", "0", check=False)
    assert proc.returncode == 2
    assert "score (model): only 2 models have both scores and human ratings" in " ".join(proc.stderr.split())


def _one_row_per_model(path) -> None:
    # Six models, one row each: a model mean is that single row.
    path.write_text("model,score,human\n" + "".join(f"M{k},{s},{h}\n" for k, (s, h) in
                                                   enumerate(zip([1, 2, 3, 4, 5, 6], [2, 1, 3, 5, 4, 6]))))


def test_one_row_per_model_resamples_models_by_default(tmp_path):
    table = tmp_path / "t.csv"
    _one_row_per_model(table)
    rows, _ = agree_results(tmp_path / "a.json", str(table), "-H", "human", "--level", "model", "--bootstrap", "300")
    row = rows[("score", "model")]
    assert row["resample"] == "models"
    assert row["srcc"] == pytest.approx(stats.spearmanr([1, 2, 3, 4, 5, 6], [2, 1, 3, 5, 4, 6]).statistic)
    lo, hi = row["ci"]["srcc"]
    assert lo < hi and lo <= row["srcc"] <= hi  # a real interval, not a point
    assert any("one row per model" in note for note in row["notes"])


def test_one_row_per_model_with_explicit_items_warns_of_zero_width(tmp_path):
    table = tmp_path / "t.csv"
    _one_row_per_model(table)
    rows, proc = agree_results(tmp_path / "a.json", str(table), "-H", "human", "--level", "model",
                               "--resample", "items", "--bootstrap", "100")
    row = rows[("score", "model")]
    assert row["resample"] == "items"
    lo, hi = row["ci"]["srcc"]
    assert lo == hi == pytest.approx(row["srcc"])  # what was asked for: the warning says why it is a point
    assert any("zero-width" in note for note in row["notes"])
    assert "zero-width" in proc.stdout


def test_several_rows_per_model_resample_items_by_default(tmp_path):
    table = tmp_path / "images.csv"
    write_per_image(table, with_human=True)
    rows, _ = agree_results(tmp_path / "a.json", str(table), "-H", "human", "-c", "overall", "--level", "both",
                            "--bootstrap", "50")
    assert rows[("overall", "model")]["resample"] == "items"
    assert rows[("overall", "sample")]["resample"] == "items"


def test_run_dir_joined_per_image_then_model_level(tmp_path):
    """A run against per-image ratings without a model column: joined on image_path at both levels."""
    from pathlib import Path

    from pixeljury.testing.rundir import FakeImage, write_run_dir

    # Model k gets Quality facets (k, k) -> 0/60/100, on two images each; ratings follow the same order.
    items, ratings = [], []
    for k, model in enumerate(["M0", "M1", "M2"]):
        for j in range(2):
            items.append(FakeImage(model, f"p{j}", Path(f"{model}_{j}.png"), {"Quality": {"Noise": k, "Resolution": k}}))
            ratings.append((f"{model}_{j}.png", 1 + 2 * k + j))
    run = write_run_dir(tmp_path / "run", items)
    human = tmp_path / "h.csv"
    human.write_text("image_path,rating\n" + "".join(f"{p},{r}\n" for p, r in ratings))
    out = tmp_path / "a.json"
    run_cli("agree", str(run), "--human", str(human), "--key", "image_path", "-H", "rating", "-c", "total",
            "--level", "both", "--bootstrap", "0", "--json", str(out))
    rows = {r["level"]: r for r in json.loads(out.read_text())["results"]}
    assert rows["sample"]["n"] == 6 and rows["model"]["n"] == 3
    assert rows["model"]["srcc"] == pytest.approx(1.0) and rows["model"]["models"] == ["M0", "M1", "M2"]
    # Per image, ties in the judge's totals (0, 0, 60, 60, 100, 100) against distinct ratings:
    # Kendall tau-b = 12 / sqrt(15 * 12).
    assert rows["sample"]["krcc"] == pytest.approx(12 / (15 * 12) ** 0.5)


def test_resample_models_with_both_levels_applies_to_the_model_level(tmp_path):
    table = tmp_path / "images.csv"
    write_per_image(table, with_human=True)
    rows, _ = agree_results(tmp_path / "a.json", str(table), "-H", "human", "-c", "overall", "--level", "both",
                            "--resample", "models", "--bootstrap", "50")
    assert rows[("overall", "model")]["resample"] == "models"
    assert rows[("overall", "sample")]["resample"] == "items"

"""Golden outputs: run every pixeljury command on the in-repo inputs and compare what they write.

    .venv/bin/python scripts/golden_outputs.py              # compare with tests/fixtures/golden/expected.json
    .venv/bin/python scripts/golden_outputs.py --write      # regenerate it (and expected_texts.json.gz)
    .venv/bin/python scripts/golden_outputs.py --texts DIR  # also write the normalised texts that are hashed
    .venv/bin/python scripts/golden_outputs.py --keep DIR   # also copy the raw inputs and outputs to DIR
    .venv/bin/python scripts/golden_outputs.py --src DIR    # run the pixeljury sources in DIR (e.g. an
                                                            # older commit's `git archive`) instead of src/

Each command runs as a real ``python -m pixeljury`` subprocess (PYTHONPATH=src, COLUMNS=200) in a fresh
temporary folder holding a copy of the inputs in tests/fixtures/golden/ (see make_inputs.py there), so
every path in the outputs is relative or under that folder. The steps (STEPS below): judge with the
official-format fixture rubric, metadata and --export csv,parquet,xlsx; judge a second input with the
builtin rubric; the first judge again on a copy of its run (resume); export on a copy holding only
the store and manifest; score (tiny CLIP for clipscore and pickscore, UnifiedReward through the replay
engine); leaderboard over both runs (CSV, Markdown, JSON); report; agree on a run and on the score
table. The judge steps and the metric steps run in two threads (they share no file). Every file they
write is read back, decoded when binary (Parquet: schema and rows; XLSX: sheets and cell values;
SQLite: schema, tables and rows), normalised (below) and hashed; so are each command's exit status,
stdout and stderr.

Normalised, because it legitimately differs between two runs or two machines:
- the temporary folder's absolute path -> ``<WORK>``;
- ISO timestamps (also the compact ones in archived manifests' names) -> ``<TIME>``; epoch times
  (``created_at``), durations (``seconds``) and file modification times (``mtime_ns``) in the result
  store -> left out;
- versions of pixeljury, Python, Pillow, torch, transformers, the platform string and the git
  revision -> ``<VERSION:name>`` (a null git revision too: sources run with --src are no checkout);
- the progress line on stderr: its rates and elapsed time;
- the report's size in KiB that `report` prints, and each JPEG thumbnail inlined in the report ->
  its mode and pixel size (JPEG bytes depend on the libjpeg build);
- Parquet and XLSX internals (writer version, creation time, row-group layout, styles) are not
  compared: only the decoded content;
- outputs of `score` and `agree`: numbers with more than 6 decimals are rounded to 6 significant
  digits, since float32 sums of the metrics and scipy's iterative 4PL fit can differ in the last
  bits on another CPU or BLAS (judge, export, leaderboard and report numbers are compared exactly);
- the tiny CLIP's weights fingerprint (``tiny-clip@local-<16 hex>``): transformers writes its files at
  test time, so it follows the transformers version; and result keys derived from the work folder's
  path or that fingerprint (the tiny CLIP's ``local:<path>@...`` weights) -> ``<key:...>``, a hash of
  the key's fields with both normalised. (A change to how pixeljury fingerprints local weights is
  therefore not seen here; the judge's result keys are compared as they are.)
- the ``.lock`` file of a run directory (it holds the last writer's pid) is left out.

On a mismatch it prints each differing file with a short unified diff against the normalised copy
kept in tests/fixtures/golden/expected_texts.json.gz and exits 1.
"""

from __future__ import annotations

import argparse
import base64
import difflib
import gzip
import hashlib
import io
import json
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "fixtures" / "golden"
EXPECTED = GOLDEN / "expected.json"
SNAPSHOT = GOLDEN / "expected_texts.json.gz"
INPUT_FILES = ("prompts.csv", "extra.jsonl", "bench_metadata.json", "checklists.py", "recorded_answers.jsonl",
               "unifiedreward_answers.jsonl", "human_ratings.csv")
REGENERATE = ".venv/bin/python scripts/golden_outputs.py --write"
METRIC_DIGITS = 6
CLIP_SEED = 6  # a seed whose tiny CLIP gives both zero and positive CLIPScores on these images
METRIC_STEPS = ("score", "agree-scores")  # the steps that need the tiny CLIP, run beside the judge steps

JUDGE_A = ["judge", "inputs/prompts.csv", "--model", "replay-judge", "--engine", "replay",
           "--replay-file", "inputs/recorded_answers.jsonl", "--metadata", "inputs/bench_metadata.json",
           "--rubric-file", "inputs/checklists.py", "--dimensions", "Quality,Aesthetics",
           "--export", "csv,parquet,xlsx"]


@dataclass
class Step:
    name: str
    argv: list[str]
    outputs: list[str]  # files or folders (relative to the work folder) this step writes
    rounded: bool = False  # numbers with more than METRIC_DIGITS decimals rounded before hashing
    prepare: str | None = None  # "resume" / "export": copy runs/a first


STEPS = [
    Step("judge", [*JUDGE_A, "--out", "runs/a"], ["runs/a"]),
    Step("judge-builtin", ["judge", "inputs/extra.jsonl", "--model", "replay-judge", "--engine", "replay",
                           "--replay-file", "inputs/recorded_answers.jsonl", "--rubric", "builtin",
                           "--dimensions", "Quality,Alignment", "--batch-size", "2", "--out", "runs/b"], ["runs/b"]),
    Step("judge-resume", [*JUDGE_A, "--out", "runs/a-resume"], ["runs/a-resume"], prepare="resume"),
    Step("export", ["export", "runs/a-export", "--format", "jsonl,csv,parquet,xlsx"], ["runs/a-export"],
         prepare="export"),
    Step("score", ["score", "inputs/prompts.csv", "--metric", "clipscore,pickscore,unifiedreward", "--out",
                   "runs/score", "--device", "cpu", "--batch-size", "3", "--weights", "clipscore=tiny-clip",
                   "--weights", "pickscore=tiny-clip", "--engine", "replay", "--replay-file",
                   "inputs/unifiedreward_answers.jsonl"], ["runs/score"], rounded=True),
    Step("leaderboard", ["leaderboard", "runs/a", "runs/b", "--csv", "out/leaderboard.csv", "--md",
                         "out/leaderboard.md", "--json", "out/leaderboard.json"],
         ["out/leaderboard.csv", "out/leaderboard.md", "out/leaderboard.json"]),
    Step("report", ["report", "runs/a", "runs/b", "--out", "out/report.html", "--title", "golden report",
                    "--thumb-size", "96"], ["out/report.html"]),
    Step("agree", ["agree", "runs/a", "--human", "inputs/human_ratings.csv", "--key", "item", "--human-col",
                   "rating", "--columns",
                   "total,Quality,Alignment,Alignment/Layout,Alignment/Layout/2D Space,Real-world Fidelity",
                   "--level", "both", "--bootstrap", "50", "--json", "out/agree_run.json",
                   "--csv", "out/agree_run.csv"],
         ["out/agree_run.json", "out/agree_run.csv"], rounded=True),
    Step("agree-scores", ["agree", "runs/score/scores.csv", "--human", "inputs/human_ratings.csv", "--key", "row",
                          "--human-col", "rater2", "--exclude", "ID", "--bootstrap", "50",
                          "--json", "out/agree_scores.json", "--csv", "out/agree_scores.csv"],
         ["out/agree_scores.json", "out/agree_scores.csv"], rounded=True),
]


# ---------------------------------------------------------------- running


def _copy_inputs(work: Path) -> None:
    dest = work / "inputs"
    dest.mkdir(parents=True)
    for name in INPUT_FILES:
        shutil.copyfile(GOLDEN / name, dest / name)
    shutil.copytree(GOLDEN / "images", dest / "images")
    (work / "out").mkdir()


def build_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A tiny transformers CLIP (and byte-level tokenizer) whose weights come from numpy's PCG64 with a
    fixed seed, not from torch's initialisers, so they are the same bytes whatever torch does."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import numpy as np
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    bos, eos = 512, 513
    config = CLIPConfig(
        text_config=dict(vocab_size=514, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=40, bos_token_id=bos, eos_token_id=eos,
                         pad_token_id=eos),
        vision_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    model = CLIPModel(config).eval()
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if name.endswith("logit_scale"):
                param.fill_(float(np.log(100.0)))
            elif "norm" in name:  # layer norms (CLIP spells one "pre_layrnorm"): about 1 and 0
                param.copy_(torch.from_numpy(1.0 * (name.endswith("weight")) + 0.02 * rng.standard_normal(param.shape)))
            else:
                param.copy_(torch.from_numpy(0.2 * rng.standard_normal(param.shape)))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.pop("transformers_version", None)  # hashed into the weights fingerprint of the metric keys
    (folder / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
    # byte-level BPE vocabulary without merges (GPT-2's printable stand-ins for the 256 bytes)
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars = [chr(c) for c in printable] + [chr(256 + i) for i in range(256 - len(printable))]
    byte_order = printable + [b for b in range(256) if b not in printable]
    chars = [c for _, c in sorted(zip(byte_order, chars))]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": 256 + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": bos, "<|endoftext|>": eos})
    tok_dir = folder.parent / (folder.name + "-tok")
    tok_dir.mkdir(exist_ok=True)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tok_dir / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt")).save_pretrained(folder)
    return folder


def _prepare(step: Step, work: Path) -> None:
    if step.prepare is None:
        return
    src = work / "runs" / "a"
    if not src.is_dir():  # the first judge failed; this step then fails too, and says how
        return
    dest = work / step.outputs[0]
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".lock"))
    if step.prepare == "export":  # leave only the store and manifests: export must rebuild the rest
        keep = {"manifest.json", "manifests"}
        for child in dest.iterdir():
            if child.name in keep or child.name.startswith("results.sqlite"):
                continue
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def _env(work: Path, src: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(src), "COLUMNS": "200", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "NO_COLOR": "1", "TERM": "dumb",
           "PYTHONHASHSEED": "0", "TZ": "UTC", "PIXELJURY_CACHE_DIR": str(work / "cache")}
    env.pop("FORCE_COLOR", None)
    return env


def _run_chain(steps: list[Step], work: Path, env: dict[str, str], results: dict[str, dict]) -> None:
    for step in steps:
        _prepare(step, work)
        began = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pixeljury", *step.argv], cwd=work, env=env,
                              capture_output=True, text=True, timeout=300)
        results[step.name] = {"argv": step.argv, "exit_code": proc.returncode, "stdout": proc.stdout,
                              "stderr": proc.stderr, "seconds": time.perf_counter() - began}


def run_steps(work: Path, src: Path = REPO / "src") -> dict[str, dict]:
    """The judge chain (judge .. agree) and the metric chain (tiny CLIP, score, agree on its table) in
    two threads: they share no file, and together they take about half the time on two cores."""
    env = _env(work, src)
    results: dict[str, dict] = {}
    metric_chain = [s for s in STEPS if s.name in METRIC_STEPS]

    def metrics() -> None:
        build = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--build-clip", str(work / "tiny-clip")],
                               env=env, capture_output=True, text=True, timeout=300)
        if build.returncode != 0:
            raise RuntimeError(f"building the tiny CLIP failed:\n{build.stdout}\n{build.stderr}")
        _run_chain(metric_chain, work, env, results)

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(metrics),
                   pool.submit(_run_chain, [s for s in STEPS if s.name not in METRIC_STEPS], work, env, results)]
        for future in futures:
            future.result()
    return {step.name: results[step.name] for step in STEPS}


# ---------------------------------------------------------------- decoding


def decode(path: Path, work: Path | None = None) -> str:
    """A file's content as text: binary formats decoded to their content only."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        lines = [json.dumps({"schema": [[f.name, str(f.type), f.nullable] for f in table.schema], "metadata": meta})]
        lines += [json.dumps(r, ensure_ascii=False, default=str) for r in table.to_pylist()]
        return "\n".join(lines) + "\n"
    if suffix == ".xlsx":
        import openpyxl

        book = openpyxl.load_workbook(path, read_only=True, data_only=False)
        lines = []
        for sheet in book.worksheets:
            lines.append(f"## sheet {sheet.title}")
            for row in sheet.iter_rows(values_only=True):
                lines.append(json.dumps(list(row), ensure_ascii=False, default=str))
        book.close()
        return "\n".join(lines) + "\n"
    if suffix == ".sqlite" or path.name.startswith("results.sqlite"):
        return _dump_sqlite(path, work)
    data = path.read_bytes()
    if suffix in (".png", ".jpg", ".jpeg", ".webp"):
        from PIL import Image

        img = Image.open(io.BytesIO(data))
        return f"image {img.mode} {img.size} pixels sha256 {hashlib.sha256(img.tobytes()).hexdigest()}\n"
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return f"binary {len(data)} bytes sha256 {hashlib.sha256(data).hexdigest()}\n"


VOLATILE_COLUMNS = {"created_at", "seconds", "mtime_ns"}
# The content fingerprint pixeljury gives the tiny CLIP's local weights: its files are written by
# transformers at test time, so it follows the transformers version, not pixeljury.
TINY_CLIP_FINGERPRINT = re.compile(r"(tiny-clip@local-)[0-9a-f]{16}")


def _dump_sqlite(path: Path, work: Path | None = None) -> str:
    """Schema and every row (sorted), without the volatile columns. A result key derived from a path
    under the work folder (a metric's local weights) differs with that folder, so it is replaced by
    ``<key:...>``, a hash of its key fields with the folder normalised, wherever it appears."""
    # Read a copy: opening the original could leave WAL files behind or touch its header.
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "store.sqlite"
        shutil.copyfile(path, copy)
        for extra in ("-wal", "-shm"):
            if Path(str(path) + extra).exists():
                shutil.copyfile(str(path) + extra, str(copy) + extra)
        con = sqlite3.connect(copy)
        try:
            lines = [f"## {name}: {sql}" for name, sql in
                     con.execute("SELECT name, sql FROM sqlite_master ORDER BY type, name")]
            tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
            renamed: dict[str, str] = {}
            if work is not None and "results" in tables:
                roots = {str(work.resolve()), str(work)}
                for key, fields in con.execute("SELECT key, key_fields FROM results"):
                    if any(root in fields for root in roots):
                        for root in roots:
                            fields = fields.replace(root, "<WORK>")
                        fields = TINY_CLIP_FINGERPRINT.sub(r"\1<fingerprint>", fields)
                        renamed[key] = f"<key:{hashlib.sha256(fields.encode()).hexdigest()[:16]}>"
            for table in tables:
                cols = [c[1] for c in con.execute(f'PRAGMA table_info("{table}")')]
                keep = [c for c in cols if c not in VOLATILE_COLUMNS]
                quoted = ", ".join(f'"{c}"' for c in keep)
                rows = [[renamed.get(v, v) if isinstance(v, str) else v for v in r]
                        for r in con.execute(f'SELECT {quoted} FROM "{table}"')]
                lines.append(f"## table {table} {keep} ({len(rows)} rows)")
                lines += sorted(json.dumps(r, ensure_ascii=False) for r in rows)
        finally:
            con.close()
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- normalising


def _versions(work: Path) -> dict[str, str]:
    from importlib import metadata

    found: dict[str, str] = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("pixeljury", "pillow", "torch", "transformers", "numpy", "pyarrow", "openpyxl", "scipy"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    if rev:
        found["git"] = rev
    manifest = work / "runs" / "a" / "manifest.json"
    if manifest.is_file():  # what the run itself recorded wins (e.g. torch's "+cu130" dropped)
        data = json.loads(manifest.read_text())
        for key in ("pixeljury_version", "git_revision", "python", "platform", "pillow", "torch", "transformers"):
            if isinstance(data.get(key), str):
                found[key] = data[key]
    return found


ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"
                      r"|\b\d{8}T\d{6}(?:\.\d+)?Z?\b")  # also the compact form in archived manifests' names
PROGRESS = [(re.compile(r"[\d.,]+ (img/min|tok/s|it/s)"), r"<rate> \1"),
            (re.compile(r"\b\d+:\d{2}:\d{2}\b"), "<elapsed>")]
# The git revision is null when the sources run are not a git checkout (--src DIR): one placeholder for both.
GIT_REVISION = re.compile(r'(git_revision(?:"\s*:\s*|</dt>\s*<dd>))(null|None|"[^"]*"|[^<"\s]*)')
SIZE = re.compile(r"\b\d+(?:\.\d+)? (KiB|MiB|GiB)\b")  # the report's size: JPEG thumbnails vary with libjpeg
THUMB = re.compile(r"data:image/(jpeg|png|webp);base64,([A-Za-z0-9+/=]+)")
FLOAT = re.compile(r"(?<![\w.])-?\d+\.\d+(?:[eE][-+]?\d+)?(?![\w.])")


def _thumb(match: re.Match) -> str:
    from PIL import Image

    img = Image.open(io.BytesIO(base64.b64decode(match.group(2))))
    return f"data:image/{match.group(1)};<{img.mode} {img.size[0]}x{img.size[1]}>"


def _round(match: re.Match) -> str:
    """A number with more than METRIC_DIGITS decimals, rounded to METRIC_DIGITS significant digits;
    shorter ones (already rounded for display) are left as written."""
    text = match.group()
    decimals = re.split(r"[eE]", text)[0].split(".")[1]
    return text if len(decimals) <= METRIC_DIGITS else repr(float(f"{float(text):.{METRIC_DIGITS}g}"))


def normalise(text: str, work: Path, versions: dict[str, str], *, rounded: bool = False, stderr: bool = False) -> str:
    for root in {str(work.resolve()), str(work)}:
        text = text.replace(root, "<WORK>")
    text = ISO_TIME.sub("<TIME>", text)
    text = GIT_REVISION.sub(r"\1<VERSION:git>", text)
    for name, value in sorted(versions.items(), key=lambda kv: -len(kv[1])):
        if len(value) >= 3 and not re.fullmatch(r"-?\d+(\.\d+)?", value):  # "2.0" could be a score
            text = re.sub(rf"(?<![\w.]){re.escape(value)}(?![\w])", f"<VERSION:{name}>", text)
    text = THUMB.sub(_thumb, text)
    text = SIZE.sub(r"<size> \1", text)
    text = TINY_CLIP_FINGERPRINT.sub(r"\1<fingerprint>", text)
    if stderr:
        for pattern, repl in PROGRESS:
            text = pattern.sub(repl, text)
    if rounded:
        text = FLOAT.sub(_round, text)
    return text


# ---------------------------------------------------------------- collecting and comparing


def collect(work: Path, results: dict[str, dict]) -> dict[str, str]:
    """Normalised text of every output, keyed ``cmd/<step>.<stream>`` or the file's path in the work folder."""
    versions = _versions(work)
    out: dict[str, str] = {}
    for step in STEPS:
        r = results[step.name]
        out[f"cmd/{step.name}.exit"] = f"{r['exit_code']}\n"
        for stream in ("stdout", "stderr"):
            out[f"cmd/{step.name}.{stream}"] = normalise(r[stream], work, versions, rounded=step.rounded,
                                                         stderr=stream == "stderr")
        for target in step.outputs:
            path = work / target
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for f in files:
                rel = ISO_TIME.sub("<TIME>", f.relative_to(work).as_posix())
                if f.name == ".lock":
                    continue
                if not f.exists():
                    out[rel] = "<missing>\n"
                    continue
                if f.name.startswith("results.sqlite-"):  # WAL/SHM: their content is in the store's dump
                    continue
                out[rel] = normalise(decode(f, work), work, versions, rounded=step.rounded)
    return out


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _load_snapshot() -> dict[str, str]:
    """Normalised texts by SHA-256, as written with --write (used only to print diffs)."""
    if not SNAPSHOT.is_file():
        return {}
    return json.loads(gzip.decompress(SNAPSHOT.read_bytes()).decode("utf-8"))


def write_expected(texts: dict[str, str]) -> None:
    EXPECTED.write_text(json.dumps({
        "about": "SHA-256 of each pixeljury output on tests/fixtures/golden, normalised as "
                 f"scripts/golden_outputs.py describes. Regenerate: {REGENERATE}",
        "outputs": {k: _sha(v) for k, v in sorted(texts.items())},
    }, indent=1) + "\n", encoding="utf-8")
    # The normalised texts themselves, once per distinct content, for the diffs of a later mismatch
    # (mtime=0 and sorted keys: the same texts give the same bytes).
    by_hash = {_sha(v): v for v in texts.values()}
    blob = json.dumps(by_hash, sort_keys=True, ensure_ascii=False).encode("utf-8")
    SNAPSHOT.write_bytes(gzip.compress(blob, compresslevel=9, mtime=0))


def compare(texts: dict[str, str], max_diff_lines: int = 40) -> list[str]:
    """Lines describing every difference from expected.json (empty when identical)."""
    if not EXPECTED.is_file():
        return [f"MISSING {EXPECTED.relative_to(REPO)}: nothing to compare with"]
    expected = json.loads(EXPECTED.read_text(encoding="utf-8"))["outputs"]
    snapshot = _load_snapshot()
    problems = []
    for key in sorted(set(expected) | set(texts)):
        if key not in texts:
            problems.append(f"MISSING {key}: expected but not written")
        elif key not in expected:
            problems.append(f"NEW {key}: written but not expected")
        elif _sha(texts[key]) != expected[key]:
            problems.append(f"DIFFERS {key}")
            if expected[key] in snapshot:
                diff = list(difflib.unified_diff(snapshot[expected[key]].splitlines(), texts[key].splitlines(),
                                                 "expected", "now", n=1, lineterm=""))[2:]
                clipped = [line if len(line) <= 300 else line[:300] + " ..." for line in diff[:max_diff_lines]]
                problems += ["    " + line for line in clipped]
                if len(diff) > max_diff_lines:
                    problems.append(f"    ... {len(diff) - max_diff_lines} more diff lines")
    return problems


def generate(keep: Path | None = None, src: Path = REPO / "src") -> tuple[dict[str, str], dict[str, dict]]:
    with tempfile.TemporaryDirectory(prefix="pj-golden-") as tmp:
        work = Path(tmp)
        _copy_inputs(work)
        results = run_steps(work, src)
        texts = collect(work, results)
        if keep is not None:
            shutil.copytree(work, keep, dirs_exist_ok=True)
    return texts, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="regenerate expected.json and expected_texts.json.gz")
    parser.add_argument("--keep", type=Path, help="copy the raw work folder (inputs and outputs) here")
    parser.add_argument("--texts", type=Path, help="write each normalised output here as a text file (to read or diff)")
    parser.add_argument("--src", type=Path, default=REPO / "src", help="the pixeljury sources to run (default: src/)")
    parser.add_argument("--build-clip", type=Path, help=argparse.SUPPRESS)  # used by run_steps
    args = parser.parse_args(argv)
    if args.build_clip:
        build_tiny_clip(args.build_clip, seed=CLIP_SEED)
        return 0
    began = time.perf_counter()
    texts, results = generate(args.keep, args.src.resolve())
    timing = ", ".join(f"{name} {r['seconds']:.1f}s" for name, r in results.items())
    print(f"{len(texts)} outputs in {time.perf_counter() - began:.1f}s ({timing})")
    if args.texts is not None:
        for key, text in texts.items():
            dest = args.texts / (key + ".txt")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text, encoding="utf-8")
    if args.write:
        write_expected(texts)
        print(f"wrote {EXPECTED.relative_to(REPO)} and {SNAPSHOT.relative_to(REPO)}")
        return 0
    problems = compare(texts)
    if not problems:
        print("golden outputs: identical")
        return 0
    print("golden outputs differ:\n" + "\n".join(problems))
    print(f"If the change is intended, regenerate with: {REGENERATE}")
    return 1


if __name__ == "__main__":
    sys.exit(main())

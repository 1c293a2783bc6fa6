"""Q-Judger (Qwen-Image-Bench): one request per (image, L1 dimension); JSON facet scores back.

Request text and answer repair follow the official ``judge.py`` / ``score_utils.py`` (upstream
commit b6b556bb); where pixeljury is stricter (values upstream coerces with ``int()``, unparseable
answers) it counts the problem instead of hiding it. Every difference from upstream's numbers is listed
in docs/qjudger.md and checked against upstream's own code in tests/test_qjudger_upstream_diff.py.
"""

from __future__ import annotations

import json
import reprlib
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from pixeljury.engines.base import ChatRequest, Generation, ImagePart, TextPart
from pixeljury.rubric.model import Rubric
from pixeljury.rubric.taxonomy import L1_NAMES, L3_ALIASES, TREE, canonical_l1, l3_to_l2
from pixeljury.scoring import DimensionScores, map_raw_score, score_dimension

PROTOCOL_ID = "qjudger"
# Part of every result key: bump when what the judge is sent changes (request building, images),
# since stored generations then no longer answer the request a new run would send.
PROTOCOL_VERSION = "1"
# Stored with every parsed result: bump when reading a generation changes meaning. Results parsed
# by another version are re-read from their stored raw text (see `current_result`); no model reruns.
PARSER_VERSION = "3"  # 3: no unwrapping of another dimension's name; {"score": {"score": x}} L2s scored

THINK_END = "</think>"

# The special tokens of the Qwen judge tokenizers: the added tokens that tokenizer_config.json marks
# special in Qwen3-VL (the first fourteen) and Qwen3.5 (those plus the audio and speech ones).
# Tokenizers read them in any text, a prompt included, as one control token each: `<|im_end|>` and
# `<|im_start|>` end the user's turn and open another (a forged system turn), an `<|image_pad|>` is
# taken for a slot of the image's features. Such a prompt is refused (see `control_tokens_in`).
# Not listed: added tokens that are not special (`<think>`, `<tool_call>`, `<|fim_prefix|>`...); they
# are single tokens too, but a user turn gives them no role, and the answer is read from the output only.
JUDGE_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<|audio_start|>",
    "<|audio_end|>",
    "<|audio_pad|>",
    "<tts_pad>",
    "<tts_text_bos>",
    "<tts_text_eod>",
    "<tts_text_bos_single>",
)


def control_tokens_in(text: str) -> list[str]:
    """The judge's special tokens (:data:`JUDGE_SPECIAL_TOKENS`) that occur in ``text``, in the order
    of their first occurrence; empty when the text is safe to send."""
    found = [(text.find(t), t) for t in JUDGE_SPECIAL_TOKENS if t in text]
    return [t for _, t in sorted(found)]


def build_request(
    rubric: Rubric, prompt: str, dimension: str, image: Image.Image, image_sha256: str, request_id: str
) -> ChatRequest:
    """System text + user content [text, image, text], split at the template's ``<image>`` line."""
    before, after = rubric.user_parts(prompt, dimension)
    return ChatRequest(
        request_id=request_id,
        system=rubric.system_prompt,
        user=[TextPart(before), ImagePart(image=image, sha256=image_sha256), TextPart(after)],
        # The official judges are Qwen3 thinking models; the schema name is what servers record.
        schema_name="qjudger_answer",
        reasoning="qwen3",
        tags={"dimension": dimension},
    )


def answer_text(text: str) -> str:
    """The part of a generation after the last ``</think>`` (all of it when there is none)."""
    cut = text.rfind(THINK_END)
    return (text[cut + len(THINK_END) :] if cut != -1 else text).strip()


def _outermost_object(answer: str) -> str | None:
    r"""What ``re.search(r"\{[\s\S]*\}", answer)`` matches (the official fallback): from the first ``{`` to
    the last ``}``. Found with find/rfind because the regex is quadratic on answers full of ``{``."""
    start, end = answer.find("{"), answer.rfind("}")
    return answer[start : end + 1] if start != -1 and end > start else None


def _decode(candidate: str) -> tuple[Any | None, str | None, bool]:
    """(object, None, False) or (None, reason, beyond_limits). Every decoding failure becomes a reason:
    malformed JSON, and -- with ``beyond_limits`` set -- text that may be JSON but exceeds what the
    decoder can handle (nesting deeper than the recursion limit, e.g. a degenerate ``[[[[...``;
    an integer over Python's digit limit)."""
    try:
        return json.loads(candidate), None, False
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc.msg} at char {exc.pos}", False
    except RecursionError:
        return None, "JSON nested too deeply to decode", True
    except ValueError as exc:
        return None, f"JSON not decodable: {exc}", True


def extract_json(text: str) -> tuple[Any | None, str | None]:
    """(object, None) or (None, reason). ``json.loads`` of the answer, else of its outermost ``{...}``.
    Never raises on a string: any decoding failure is a reason."""
    answer = answer_text(text)
    obj, reason, beyond_limits = _decode(answer)
    if reason is None:
        return obj, None
    candidate = _outermost_object(answer)
    if candidate is None:
        if not answer:
            return None, "empty answer after the thinking"
        return None, "no JSON object after the thinking" + (f" ({reason})" if beyond_limits else "")
    obj, reason, _ = _decode(candidate)
    return obj, reason


def _is_facet_entry(value: Any) -> bool:
    return isinstance(value, dict) and "score" in value


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 3, 60, 60, 40


def _shown(entry: Any) -> str:
    """A short rendering of a facet entry for repair notes (bounded in length and depth)."""
    return "score " + _SHORT.repr(entry["score"]) if _is_facet_entry(entry) else _SHORT.repr(entry)


def _upstream_scores(value: Any) -> bool:
    """Whether the official ``map_score`` would give ``value`` a number (``SCORE_MAP[int(value)]``)."""
    try:
        return int(value) in (0, 1, 2)
    except (TypeError, ValueError, OverflowError):
        return False


def _is_comment(value: Any) -> bool:
    """A string neither the official nor pixeljury's mapping scores (a reason, an explanation)."""
    return isinstance(value, str) and not _upstream_scores(value) and map_raw_score(value)[1] == "invalid"


def repair(obj: dict[str, Any], dimension: str) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Regroup an answer as ``{L2: {L3: entry}}`` the way the official ``fix_score_json`` does, plus
    unwrapping of an object keyed by the request's own L1 name. Returns (grouped, notes on every
    repair made).

    Apart from that unwrapping (upstream unwraps nothing), every number comes out as upstream computes
    it; where upstream loses or misnames data silently, a note says so: a facet given twice (upstream
    keeps the last), an object without a score where a facet's entry belongs (upstream does not score
    it). A single-facet L2 given as ``{"Resolution": {"score": 0}}`` gets its facet's name instead of
    upstream's facet ``"score"`` -- the same number either way."""
    notes: list[str] = []
    if len(obj) == 1:
        (key, inner), = obj.items()
        if isinstance(inner, dict) and not _is_facet_entry(inner):
            named = canonical_l1(key)
            if named == dimension:
                notes.append(f"unwrapped L1 key {key!r}")
                obj = inner
            elif named is not None:
                # Upstream unwraps nothing; unwrapping another dimension's answer would score it as
                # this one. Read as upstream does: the name is an L2, its contents are facets.
                notes.append(f"did not unwrap {key!r}: it names another dimension than {dimension!r}; "
                             "as upstream, it is read as an L2")
    mapping = l3_to_l2(dimension)
    rename = L3_ALIASES.get(dimension, {})
    grouped: dict[str, dict[str, Any]] = {}
    given_as: dict[tuple[str, str], str] = {}  # (L2, L3) -> where the answer gave the kept entry

    def put(l2: str, l3: str, entry: Any, where: str) -> None:
        facets = grouped.setdefault(l2, {})
        if l3 in facets:
            notes.append(f"facet {l3!r} given twice: kept {where} ({_shown(entry)}), "
                         f"dropped {given_as[l2, l3]} ({_shown(facets[l3])}), as upstream keeps the last")
        facets[l3] = entry
        given_as[l2, l3] = where

    first = next(iter(obj.values()), None)
    if _is_facet_entry(first):  # flat {L3: {"score": ...}}: regroup under the canonical L2
        notes.append("regrouped flat facet scores under their L2")
        for l3, entry in obj.items():
            where = repr(l3)
            if isinstance(entry, dict) and not _is_facet_entry(entry):
                notes.append(f"{l3!r} holds an object without a score in a flat answer; as upstream, it is not "
                             f"scored and its contents are lost: {_shown(entry)}")
            if l3 in rename:
                notes.append(f"renamed facet {l3!r} to {rename[l3]!r}")
                l3 = rename[l3]
            put(mapping.get(l3, l3), l3, entry, where)
        return grouped, notes
    single_facet = {l2: l3s[0] for l2, l3s in TREE.get(dimension, {}).items() if len(l3s) == 1}
    as_one_facet: dict[str, dict[str, Any]] = {}  # L2 -> its value, when that value is one facet entry
    for l2, facets in obj.items():
        if not isinstance(facets, dict):
            notes.append(f"dropped non-object value under {l2!r}")
            continue
        # Only a plain value is read as the L2's facet: upstream scores {"score": {"score": x}} as a facet
        # "score" whose entry holds x, and as the facet's own entry that object would have no number.
        if (l2 in single_facet and "score" in facets and not isinstance(facets["score"], dict)
                and all(k not in mapping and _is_comment(v) for k, v in facets.items() if k != "score")):
            as_one_facet[l2] = facets
        for l3, entry in facets.items():
            where = f"{l3!r} under {l2!r}"
            if isinstance(entry, dict) and not _is_facet_entry(entry):
                notes.append(f"{where} is an object without a score; as upstream, it is not scored and its "
                             f"contents are lost: {_shown(entry)}")
            if l3 in rename:
                notes.append(f"renamed facet {l3!r} to {rename[l3]!r}")
                l3 = rename[l3]
            target = mapping.get(l3, l2)
            if target != l2:
                notes.append(f"moved facet {l3!r} from {l2!r} to {target!r}")
            put(target, l3, entry, where)
    for l2, facets in as_one_facet.items():
        # Upstream keeps {"score": x, ...} as facets named "score", ... of this L2; while nothing else
        # landed in it, reading it as the L2's single facet changes no number, only the name.
        kept = grouped.get(l2, {})
        if list(kept) == list(facets) and all(kept[k] is v and given_as[l2, k] == f"{k!r} under {l2!r}"
                                              for k, v in facets.items()):
            grouped[l2] = {single_facet[l2]: facets}
            notes.append(f"read {l2!r}: {{'score': ...}} as its single facet {single_facet[l2]!r}")
    for l2, facets in grouped.items():
        if "score" in facets:
            notes.append(f"{l2!r} holds a score, not facet scores; kept as a facet named 'score', as upstream")
    return grouped, notes


_JSON_KIND = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


@dataclass
class DimensionResult:
    """The judge's verdict on one (image, dimension): status, scores, and everything needed to audit it."""

    dimension: str
    status: str  # "scored" | "all_na" | "parse_failure" | "error"
    truncated: bool = False
    parsed: dict[str, Any] | None = None  # the repaired {L2: {L3: entry}} object
    scores: DimensionScores | None = None
    repairs: list[str] = field(default_factory=list)
    unknown_facets: list[str] = field(default_factory=list)  # facet names outside the taxonomy (still scored, as upstream does)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        s = self.scores
        return {
            "parser_version": PARSER_VERSION,
            "status": self.status,
            "truncated": self.truncated,
            "parsed": self.parsed,
            "level1": s.l1 if s else None,
            "level2": s.l2 if s else None,
            "level3": s.l3 if s else None,
            "n_scored": s.n_scored if s else 0,
            "n_na": s.n_na if s else 0,
            "invalid": s.invalid if s else [],
            "repairs": self.repairs,
            "unknown_facets": self.unknown_facets,
            "error": self.error,
        }


def parse_generation(text: str, dimension: str, *, truncated: bool = False) -> DimensionResult:
    """Read one generation into a :class:`DimensionResult`. Never raises on model output."""
    obj, reason = extract_json(text)
    if reason is not None:
        if truncated:
            reason += " (generation hit max_new_tokens)"
        return DimensionResult(dimension, "parse_failure", truncated, error=reason)
    if not isinstance(obj, dict) or not obj:
        kind = "an empty object" if isinstance(obj, dict) else f"a JSON {_JSON_KIND.get(type(obj), type(obj).__name__)}"
        return DimensionResult(dimension, "parse_failure", truncated, error=f"answer is {kind}, not facet scores")
    grouped, notes = repair(obj, dimension)
    if not grouped:
        return DimensionResult(dimension, "parse_failure", truncated, repairs=notes, error="no facet scores in the answer")
    known = l3_to_l2(dimension)
    unknown = [l3 for facets in grouped.values() for l3 in facets if l3 not in known]
    scores = score_dimension(grouped)
    if scores.n_scored:
        return DimensionResult(dimension, "scored", truncated, grouped, scores, notes, unknown)
    if not scores.invalid:  # every facet N/A: the judge's own verdict
        return DimensionResult(dimension, "all_na", truncated, grouped, scores, notes, unknown)
    # Not a single usable value: not N/A (the judge did not say so) and never a 0. Counted as a parse
    # failure -- the statuses the pipeline, exports and reports count are fixed -- with the answer kept.
    why = f"no valid score values: {len(scores.invalid)} invalid" + (f", {scores.n_na} N/A" if scores.n_na else "")
    return DimensionResult(dimension, "parse_failure", truncated, grouped, scores, notes, unknown, error=why)


def parse(generation: Generation, dimension: str) -> DimensionResult:
    return parse_generation(generation.full_text, dimension, truncated=generation.truncated)


def current_result(stored: dict[str, Any] | None, raw_text: str | None, reasoning: str | None,
                   finish_reason: str | None, dimension: str) -> dict[str, Any] | None:
    """A stored parsed result as this version of the parser reads it: returned as is when it was
    parsed by the current version, else parsed again from the stored generation."""
    if stored is not None and stored.get("parser_version") == PARSER_VERSION:
        return stored
    if raw_text is None:
        return stored
    generation = Generation("stored", raw_text, finish_reason or "stop", reasoning=reasoning)
    return parse(generation, dimension).as_dict()


__all__ = [
    "L1_NAMES",
    "PROTOCOL_ID",
    "PROTOCOL_VERSION",
    "PARSER_VERSION",
    "JUDGE_SPECIAL_TOKENS",
    "DimensionResult",
    "current_result",
    "answer_text",
    "build_request",
    "control_tokens_in",
    "extract_json",
    "image_scores_from_dicts",
    "parse",
    "parse_generation",
    "repair",
]


def image_scores_from_dicts(dimensions: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per-image scores from stored dimension dicts (``DimensionResult.as_dict()`` form)."""
    from pixeljury.scoring import image_total

    scored = {d: v for d, v in dimensions.items() if v.get("level1") is not None or v.get("level2")}
    l1 = {d: v.get("level1") for d, v in scored.items()}
    return {
        "total": image_total(l1),
        "level1": l1,
        "level2": {d: v["level2"] for d, v in scored.items() if v.get("level2") is not None},
        "level3": {d: v["level3"] for d, v in scored.items() if v.get("level3") is not None},
    }

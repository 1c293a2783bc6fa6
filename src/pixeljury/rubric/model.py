"""The Rubric value object and the checklist format shared by the official and built-in rubrics."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

from pixeljury.rubric.taxonomy import L1_NAMES

IMAGE_MARK = "<image>"


class RubricError(ValueError):
    """A rubric file is missing, malformed, or not the one that was pinned."""


_L2_LINE = re.compile(r"^## (?P<l2>.+?)\s*$")
_L3_LINE = re.compile(r"^- (?P<l3>.+?): (?P<question>.*)$")


def parse_checklist(text: str) -> dict[str, dict[str, str]]:
    """``## <L2>`` headings followed by ``- <L3>: <question>`` lines -> {L2: {L3: question}}.

    L3 names may contain ``/`` and ``:`` is the first ``": "`` separator, as in the official files.
    """
    out: dict[str, dict[str, str]] = {}
    current: str | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if m := _L2_LINE.match(line):
            current = m["l2"]
            out.setdefault(current, {})
        elif (m := _L3_LINE.match(line)) and current is not None:
            out[current][m["l3"]] = m["question"]
        else:
            raise RubricError(f"checklist line {lineno} is neither '## L2' nor '- L3: question': {line!r}")
    return out


@dataclass(frozen=True)
class Rubric:
    """Everything the Q-Judger protocol sends besides the prompt and the image."""

    source: str  # "official" or "builtin"
    system_prompt: str
    user_template: str  # str.format template with {prompt}, {level1_dim}, {format_checklist}
    checklists: dict[str, str]  # L1 -> checklist text
    sha256: str  # of the file bytes (official) or of the canonical JSON of the content (built-in)
    origin: str  # where it came from: a path, a URL, or "pixeljury"
    comparable: bool = True  # scores comparable to the published benchmark?
    facets: dict[str, dict[str, tuple[str, ...]]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        missing = [d for d in L1_NAMES if d not in self.checklists]
        if missing:
            raise RubricError(f"rubric from {self.origin} has no checklist for {missing}")
        if self.user_template.count(IMAGE_MARK) != 1:
            raise RubricError(f"rubric user template must contain exactly one {IMAGE_MARK!r} line")
        parsed = {l1: {l2: tuple(q) for l2, q in parse_checklist(text).items()} for l1, text in self.checklists.items()}
        object.__setattr__(self, "facets", parsed)

    def user_text(self, prompt: str, dimension: str) -> str:
        """The full user message, exactly as the official code formats it (``<image>`` still inline)."""
        return self.user_template.format(
            prompt=prompt, level1_dim=dimension, format_checklist=self.checklists[dimension]
        )

    def user_parts(self, prompt: str, dimension: str) -> tuple[str, str]:
        """The user message split around the template's ``<image>`` mark: (text before, text after).

        Each half of the template is formatted on its own, so a prompt that itself contains
        ``<image>`` cannot move the split. Joined with ``<image>`` they equal :meth:`user_text`.
        """
        fields = {"prompt": prompt, "level1_dim": dimension, "format_checklist": self.checklists[dimension]}
        tmpl_before, tmpl_after = self.user_template.split(IMAGE_MARK, 1)
        return tmpl_before.format(**fields), tmpl_after.format(**fields)

    def summary(self) -> dict:
        return {"source": self.source, "sha256": self.sha256, "origin": self.origin, "comparable": self.comparable}


def content_hash(system_prompt: str, user_template: str, checklists: dict[str, str]) -> str:
    blob = json.dumps(
        {"system": system_prompt, "user": user_template, "checklists": checklists}, sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()

"""One registry of engines, evaluators and metrics, with third-party plugins from an entry-point group.

Nothing named here is imported until it is used: an entry holds its target as a ``"module:attribute"``
string, and the built-ins are lists of strings. The first lookup fills the registry: the built-ins,
then every plugin, i.e. every entry point of the group ``pixeljury.plugins``. A plugin's entry point
names a callable that receives the registry and registers entries::

    # pyproject.toml of a third-party package
    [project.entry-points."pixeljury.plugins"]
    mypkg = "mypkg.pixeljury_plugin:register"

    # mypkg/pixeljury_plugin.py
    def register(registry):
        registry.register("evaluator", "my-judge", "mypkg.judge:MyJudge", "what it judges",
                          protocol_id="my-judge", protocol_version="1")

A plugin that fails to import or to register warns (:class:`PluginWarning`, naming its distribution),
registers nothing (its partial entries are removed) and leaves the built-ins and other plugins intact.

Importing this module imports nothing beyond the standard library.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

KINDS = ("engine", "evaluator", "metric")
ENTRY_POINT_GROUP = "pixeljury.plugins"
BUILTIN = "built-in"


class RegistryError(LookupError):
    """A registry lookup or registration failed; the message says why."""


class UnknownEntry(RegistryError):
    """No entry of that kind has that name; the message lists close matches."""


class DuplicateEntry(RegistryError):
    """Two sources registered the same (kind, name); the message names both."""


class PluginError(RegistryError):
    """A plugin failed to load or to register (raised in strict mode, otherwise a warning)."""


class PluginWarning(UserWarning):
    """A plugin was skipped because it failed; the message names its distribution and the error."""


@dataclass(frozen=True)
class Entry:
    """One registered engine, evaluator or metric.

    ``target`` is ``"module:attribute"`` (or ``"module"``), imported only by :meth:`load`.
    ``metadata`` holds the conventions shown by ``pixeljury list`` (JSON values).
    ``payload`` is an optional in-memory object the entry describes (a metric's ``MetricSpec``).
    """

    kind: str
    name: str
    target: str
    description: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    source: str = BUILTIN
    payload: Any = field(default=None, compare=False, repr=False)

    @property
    def builtin(self) -> bool:
        return self.source == BUILTIN

    def load(self) -> Any:
        """Import the target: the module, or the attribute (dotted path allowed) after the colon."""
        module_name, _, attribute = self.target.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in filter(None, attribute.split(".")):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise RegistryError(f"{self.kind} {self.name!r} ({self.source}): cannot load {self.target}: {exc}") from exc
        return obj

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "target": self.target, "description": self.description,
                "source": self.source, "metadata": dict(self.metadata)}


# --- built-ins: strings only --------------------------------------------------------------------
# (name, target, description, extra). Targets are builders taking an EngineSpec (engines/factory.py).
_BUILTIN_ENGINES = (
    ("transformers", "pixeljury.engines.factory:build_transformers",
     "in-process transformers model (CPU or GPU)", "torch"),
    ("vllm", "pixeljury.engines.factory:build_vllm", "in-process vLLM: continuous batching, paged KV cache", "vllm"),
    ("openai", "pixeljury.engines.factory:build_openai", "any OpenAI-compatible server (--endpoint URL)", None),
    ("replay", "pixeljury.engines.factory:build_replay", "answers recorded in a JSON-lines file (--replay-file)", None),
)
# (name, target, description); protocol id/version are read from the module's constants by parsing it.
_BUILTIN_EVALUATORS = (
    ("qjudger", "pixeljury.protocols.qjudger",
     "Q-Judger protocol of Qwen-Image-Bench: per-dimension requests, JSON verdicts, official scoring"),
)
# Callables that register a family of entries from data they own (the metric specs).
_BUILTIN_PROVIDERS = ("pixeljury.metrics.registry:register_entries",)


def module_constants(module: str, names: Iterable[str]) -> dict[str, Any]:
    """Literal constants of a module, read from its source without executing it (no heavy import)."""
    wanted = set(names)
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return {}
    with open(spec.origin, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), filename=spec.origin)
    found: dict[str, Any] = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        value = getattr(node, "value", None)
        for target in targets:
            if isinstance(target, ast.Name) and target.id in wanted and value is not None:
                try:
                    found[target.id] = ast.literal_eval(value)
                except ValueError:
                    pass
    return found


def _register_builtins(registry: "Registry") -> None:
    for name, target, description, extra in _BUILTIN_ENGINES:
        registry.register("engine", name, target, description, extra=extra)
    for name, target, description in _BUILTIN_EVALUATORS:
        consts = module_constants(target.partition(":")[0], ("PROTOCOL_ID", "PROTOCOL_VERSION", "PARSER_VERSION"))
        registry.register("evaluator", name, target, description, protocol_id=consts.get("PROTOCOL_ID", name),
                          protocol_version=consts.get("PROTOCOL_VERSION"), parser_version=consts.get("PARSER_VERSION"))
    for provider in _BUILTIN_PROVIDERS:
        Entry("provider", provider, provider).load()(registry)


def _distribution_name(entry_point: Any) -> str:
    dist = getattr(entry_point, "dist", None)
    name = getattr(dist, "name", None) or (dist.metadata["Name"] if dist is not None else None)
    return str(name) if name else f"unknown distribution (entry point {entry_point.value})"


def _entry_points(group: str) -> list[Any]:
    from importlib.metadata import entry_points

    return sorted(entry_points(group=group), key=lambda ep: (ep.name, ep.value))


class Registry:
    """Entries by (kind, name). Filled on first lookup: built-ins, then the plugins of ``group``."""

    def __init__(self, *, group: str | None = ENTRY_POINT_GROUP,
                 builtins: Callable[["Registry"], None] | None = _register_builtins) -> None:
        self._group = group
        self._builtins = builtins
        self._entries: dict[tuple[str, str], Entry] = {}
        self._loaded = False
        self._loading = False
        self._lock = threading.RLock()
        self._source = BUILTIN
        self.plugin_errors: list[str] = []

    # --- registration ---------------------------------------------------------------------------
    def register(self, kind: str, name: str, target: str, description: str = "", *, payload: Any = None,
                 **metadata: Any) -> Entry:
        """Add one entry; a (kind, name) already taken is a :class:`DuplicateEntry` naming both sources."""
        if kind not in KINDS:
            raise RegistryError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
        if not name or not isinstance(name, str):
            raise RegistryError(f"a {kind} needs a non-empty name")
        if not isinstance(target, str) or not target.partition(":")[0]:
            raise RegistryError(f"{kind} {name!r}: target must be 'module:attribute', got {target!r}")
        entry = Entry(kind, name, target, " ".join(description.split()), MappingProxyType(dict(metadata)),
                      self._source, payload)
        with self._lock:
            taken = self._entries.get((kind, name))
            if taken is not None:
                raise DuplicateEntry(f"{kind} {name!r} is registered twice: by {taken.source} ({taken.target}) "
                                     f"and by {entry.source} ({entry.target})")
            self._entries[(kind, name)] = entry
        return entry

    # --- loading --------------------------------------------------------------------------------
    def ensure_loaded(self, *, strict: bool = False) -> None:
        """Register the built-ins and the plugins, once. ``strict`` raises the first plugin failure."""
        with self._lock:
            if self._loaded or self._loading:
                return
            self._loading = True
            try:
                if self._builtins is not None:
                    self._builtins(self)
                if self._group:
                    for entry_point in _entry_points(self._group):
                        self._load_plugin(entry_point, strict=strict)
                self._loaded = True
            finally:
                self._loading = False

    def load_plugin(self, entry_point: Any, *, strict: bool = False) -> bool:
        """Run one plugin (an entry point or anything with ``name``, ``value``, ``load()``); True when it
        registered cleanly."""
        with self._lock:
            return self._load_plugin(entry_point, strict=strict)

    def _load_plugin(self, entry_point: Any, *, strict: bool) -> bool:
        dist = _distribution_name(entry_point)
        before = set(self._entries)
        self._source = f"plugin {dist}"
        try:
            hook = entry_point.load()
            if not callable(hook):
                raise TypeError(f"{entry_point.value} is a {type(hook).__name__}, not a callable taking the registry")
            hook(self)
        except Exception as exc:  # a plugin's failure must never take the built-ins down with it
            for key in set(self._entries) - before:
                del self._entries[key]
            message = (f"pixeljury plugin {entry_point.name!r} from distribution {dist!r} "
                       f"({entry_point.value}) failed and was skipped: {type(exc).__name__}: {exc}")
            self.plugin_errors.append(message)
            if strict:
                raise PluginError(message) from exc
            warnings.warn(message, PluginWarning, stacklevel=3)
            return False
        finally:
            self._source = BUILTIN
        return True

    # --- lookup ---------------------------------------------------------------------------------
    def entries(self, kind: str | None = None) -> list[Entry]:
        """Every entry (of one kind), kinds in KINDS order, in registration order within a kind."""
        if kind is not None and kind not in KINDS:
            raise RegistryError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
        self.ensure_loaded()
        kinds = KINDS if kind is None else (kind,)
        return [e for k in kinds for (ek, _), e in self._entries.items() if ek == k]

    def registered(self, kind: str) -> list[Entry]:
        """The entries of one kind registered so far, without loading built-ins or plugins."""
        return [e for (ek, _), e in list(self._entries.items()) if ek == kind]

    def names(self, kind: str) -> list[str]:
        return [e.name for e in self.entries(kind)]

    def find(self, kind: str, name: str) -> Entry | None:
        self.ensure_loaded()
        return self._entries.get((kind, name))

    def get(self, kind: str, name: str) -> Entry:
        """The entry, or :class:`UnknownEntry` naming the close matches and every known name."""
        found = self.find(kind, name)
        if found is not None:
            return found
        raise UnknownEntry(unknown_message(kind, name, self.names(kind)))

    def load(self, kind: str, name: str) -> Any:
        """Import and return the entry's target."""
        return self.get(kind, name).load()

    def __contains__(self, key: tuple[str, str]) -> bool:
        return self.find(*key) is not None


def close_matches(name: str, known: Iterable[str]) -> list[str]:
    known = list(known)
    lowered = {k.lower(): k for k in known}
    return [lowered[m] for m in difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.7)]


def unknown_message(kind: str, name: str, known: Iterable[str], *, lead: str = "known:") -> str:
    """``unknown <kind> '<name>'; did you mean ...? known: ...`` (``lead`` replaces ``known:``)."""
    known = list(known)
    near = close_matches(name, known)
    hint = f"did you mean {' or '.join(repr(m) for m in near)}? " if near else ""
    return f"unknown {kind} {name!r}; {hint}{lead} {', '.join(known) or '(none)'}"


_DEFAULT: Registry | None = None
_DEFAULT_LOCK = threading.Lock()


def registry() -> Registry:
    """The process-wide registry (built-ins and installed plugins), created on first use."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = Registry()
        return _DEFAULT


__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "KINDS", "DuplicateEntry", "Entry", "PluginError", "PluginWarning",
           "Registry", "RegistryError", "UnknownEntry", "close_matches", "module_constants", "registry",
           "unknown_message"]

"""Options of a rule or an implementation, written ``NAME:KEY=VALUE[;KEY=VALUE]``: the one syntax for them.

    naive:group_size=8                  naive with G = 8
    swta:temperature=0.05               the SWTA rule at T = 0.05
    fh                                  no options (in a grid: an fnmatch pattern, "!loop" excludes)

It is read by ``hebbbench run --rules/--impls``, a grid file's ``rules``/``impls`` lists,
``reproduce --impls``, ``scale --impls`` and ``profile --rule/--impl``. Each item is one
variant: ``naive:group_size=8,naive:group_size=128,fh`` lists two variants of naive and fh.
Option names are checked against the registry's ``default_options()`` (an implementation's
own options, not its rule's), values are converted to the type of the default and checked
by the classes themselves; every mistake is one :class:`~hebbbench.errors.UserError` line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hebbbench.errors import UserError
from hebbbench.rules import registry

KINDS = ("rule", "impl")


@dataclass(frozen=True)
class Spec:
    """A rule or implementation name and its options, sorted by name."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.options)


def parse_spec(text: str, kind: str = "impl", where: str = "") -> Spec:
    """``"naive:group_size=8;..."`` -> Spec("naive", (("group_size", 8), ...)); a name alone is returned as it is."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    item = str(text).strip()
    name, colon, rest = (part.strip() for part in item.partition(":"))
    if not colon:
        return Spec(name)
    say = f"{where}: {item}" if where else item
    classes, accepted = _classes(name, kind, say)
    options: dict[str, Any] = {}
    for pair in rest.split(";"):
        key, equals, value = (part.strip() for part in pair.partition("="))
        if not equals or not key:
            raise UserError(f"{say}: expected {kind}:key=value[;key=value], e.g. naive:group_size=8")
        if key not in accepted:
            raise UserError(f"{say}: unknown option {key!r} for {name}; allowed: {', '.join(sorted(accepted)) or 'none'}")
        if key in options:
            raise UserError(f"{say}: option {key!r} given twice")
        options[key] = _convert(value, accepted[key], key, say)
    for cls in classes:  # the values' domains, as each class checks them (e.g. group_size >= 1)
        if set(options) <= set(cls.default_options()):
            try:
                cls(**options)
            except ValueError as exc:
                raise UserError(f"{say}: {exc}") from None
    return Spec(name, tuple(sorted(options.items())))


def _classes(name: str, kind: str, say: str) -> tuple[list[type[registry.Update]], dict[str, Any]]:
    """The classes that ``name`` stands for and the options they accept (name -> default)."""
    if kind == "rule":
        if name not in registry.rules():
            raise UserError(f"{say}: unknown rule {name!r}; allowed: {', '.join(registry.rules())}")
        cls = registry.rule_class(name)
        return [cls], cls.default_options()
    pairs = registry.available("*", name) if name in registry.impls() else []
    if not pairs:
        raise UserError(f"{say}: unknown impl {name!r}; allowed: {', '.join(registry.impls())}")
    classes = [registry.lookup(r, i) for r, i in pairs]
    accepted: dict[str, Any] = {}
    for (rule, _), cls in zip(pairs, classes):  # the implementation's own options, not its rule's
        own = registry.rule_class(rule).default_options()
        accepted.update({k: v for k, v in cls.default_options().items() if k not in own})
    return classes, accepted


def _convert(text: str, default: Any, key: str, say: str) -> Any:
    """``text`` as a value of the default's type: true/false, an integer, a number or text."""
    if isinstance(default, bool):
        if text.lower() not in ("true", "false"):
            raise UserError(f"{say}: {key} must be true or false, got {text!r}")
        return text.lower() == "true"
    if isinstance(default, (int, float)):
        cast, what = (int, "an integer") if isinstance(default, int) else (float, "a number")
        try:
            return cast(text)
        except ValueError:
            raise UserError(f"{say}: {key} must be {what}, got {text!r}") from None
    if default is None:  # no type to go by: a number, true/false, else the text
        for cast in (int, float):
            try:
                return cast(text)
            except ValueError:
                pass
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
    return text

"""Component configuration: one frozen struct per component, unknown keys rejected, units in names."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base for every component config. Build from a dict with `from_dict` to get key checking."""

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        return msgspec.convert(data, cls)

    def to_dict(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]


C = TypeVar("C", bound=Config)

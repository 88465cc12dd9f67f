"""The configuration an administrator sets up on a server (``--config FILE``).

A stock Workflow Manager server's job types, users and groups are made in Workflow
Manager Administrator, never over REST. The emulator stands in for that with a JSON
file applied at every start::

    {"jobTypes": [{"name": "Edit Data", "description": "..."}],
     "users": [{"userName": "jdoe", "fullName": "Jane Doe"}],
     "groups": [{"name": "Editors", "users": ["jdoe"]}]}

Items not yet present (by name) are added; nothing is removed or changed, so a
restart with the same file changes nothing and a file that gained an item adds it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from wmsync.model import guid_for_name
from wmsync.repository.store import Store

from . import shapes
from .limits import MAX_TEXT_CHARS

_KEYS = {
    "jobTypes": ("name", "description"),
    "users": ("userName", "fullName"),
    "groups": ("name", "users"),
}


class SiteConfigError(ValueError):
    """A configuration file that cannot be used (the message names file and item)."""


@dataclass(frozen=True)
class SiteConfig:
    """Job types ``(name, description)``, users ``(userName, fullName)`` and groups
    ``(name, users)`` to add when missing."""

    job_types: Sequence[Tuple[str, str]] = ()
    users: Sequence[Tuple[str, str]] = ()
    groups: Sequence[Tuple[str, Sequence[str]]] = field(default_factory=tuple)


def _text(where: str, item: Mapping[str, Any], key: str, required: bool) -> str:
    value = item.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise SiteConfigError(f"{where}: {key!r} must be a non-empty text")
    if len(value) > MAX_TEXT_CHARS:
        raise SiteConfigError(f"{where}: {key!r} is longer than {MAX_TEXT_CHARS} characters")
    return value.strip() if required else value


def parse_site_config(payload: Any, source: str = "configuration") -> SiteConfig:
    """Check and read a configuration document (already decoded from JSON).

    :raises SiteConfigError: naming *source* and the item that is wrong.
    """
    if not isinstance(payload, dict):
        raise SiteConfigError(f"{source}: a JSON object is expected")
    unknown = sorted(set(payload) - set(_KEYS))
    if unknown:
        raise SiteConfigError(
            f"{source}: unknown key {unknown[0]!r} (expected jobTypes, users, groups)"
        )
    lists: Dict[str, List[Mapping[str, Any]]] = {}
    for key in _KEYS:
        items = payload.get(key, [])
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise SiteConfigError(f"{source}: {key!r} must be a list of objects")
        lists[key] = items
    job_types = [
        (
            _text(f"{source} jobTypes[{n}]", i, "name", True),
            _text(f"{source} jobTypes[{n}]", i, "description", False),
        )
        for n, i in enumerate(lists["jobTypes"])
    ]
    users = []
    for n, i in enumerate(lists["users"]):
        where = f"{source} users[{n}]"
        name = shapes.user_name(_text(where, i, "userName", True))
        users.append((name, _text(where, i, "fullName", False) or name))
    groups = []
    for n, i in enumerate(lists["groups"]):
        where = f"{source} groups[{n}]"
        members = i.get("users", [])
        if not isinstance(members, list) or not all(
            isinstance(m, str) and m.strip() for m in members
        ):
            raise SiteConfigError(f"{where}: 'users' must be a list of user names")
        groups.append(
            (_text(where, i, "name", True), [shapes.user_name(m.strip()) for m in members])
        )
    return SiteConfig(job_types, users, tuple(groups))


def load_site_config(path: str) -> SiteConfig:
    """Read a ``--config FILE``.

    :raises SiteConfigError: the file cannot be read, is not JSON or not the expected shape.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            payload = json.load(handle)
    except OSError as error:
        raise SiteConfigError(f"{path}: cannot be read ({error.strerror})") from None
    except ValueError as error:
        raise SiteConfigError(f"{path}: not valid JSON ({error})") from None
    return parse_site_config(payload, path)


def apply_site_config(store: Store, site: SiteConfig) -> int:
    """Add the items of *site* that *store* lacks (by name); returns how many were added.

    Items added here get the GUID their name always has, so that repositories set up
    from the same file hold the same elements.
    """
    added = 0
    with store.atomic() as s:
        type_names = {t.fields.get("name") for t in s.live("JobType")}
        for name, description in site.job_types:
            if name not in type_names:
                s.edit(
                    "JobType",
                    guid_for_name("JobType", name),
                    {
                        "name": name,
                        "description": description,
                        "created": str(store.now_ms()),
                        "defaultPriority": "0",
                        "defaultAssignedType": "0",
                    },
                )
                type_names.add(name)
                added += 1
        for user_name, full_name in site.users:
            guid = guid_for_name("User", user_name)
            if s.get_live(guid, "User") is None:
                s.edit("User", guid, {"userName": user_name, "fullName": full_name})
                added += 1
        for name, members in site.groups:
            guid = guid_for_name("Group", name)
            if s.get_live(guid, "Group") is None:
                fields = {"name": name, "description": ""}
                if members:
                    fields["users"] = shapes.encode_users(list(members))
                s.edit("Group", guid, fields)
                added += 1
    return added

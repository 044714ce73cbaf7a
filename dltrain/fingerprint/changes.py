"""Comparing two fingerprints: one line per difference, naming the file, folder or parameter."""

from __future__ import annotations

import os
from typing import Any, List, Mapping, Optional, Tuple


def compare(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> List[str]:
    """The differences between two fingerprints, one line each, naming the file, folder or
    parameter and what changed; empty when the data are the same.

    Tolerant of a fingerprint written by an older dltrain: a section or parameter the recorded one
    lacks is not compared. A file found at another path with the same contents is the same data.
    """
    if recorded.get("name", current.get("name")) != current.get("name"):
        return [f"data: {recorded.get('name')} → {current.get('name')}"]
    name = current.get("name")
    out: List[str] = []
    for key, old, new in _paired(recorded.get("files"), current.get("files")):
        out += _file_change(key, old, new)
    for key, old, new in _paired(recorded.get("folders"), current.get("folders")):
        out += _folder_change(key, old, new)
    old_params, new_params = recorded.get("generated") or {}, current.get("generated") or {}
    for param in [p for p in new_params if p in old_params]:
        if old_params[param] != new_params[param]:
            out.append(f"data.{param}: {old_params[param]} → {new_params[param]}")
    old_libs, new_libs = recorded.get("library") or {}, current.get("library") or {}
    for library in [lib for lib in new_libs if lib in old_libs]:
        if old_libs[library] != new_libs[library]:
            what = "draws" if "generated" in current else "provides"
            out.append(f"{library} {old_libs[library]} → {new_libs[library]} "
                       f"(it {what} the samples of data={name})")
    return out


Entry = Optional[Mapping[str, Any]]


def _paired(recorded: Any, current: Any) -> List[Tuple[str, Entry, Entry]]:
    """(label, recorded entry, current entry) for the files (or folders) of two fingerprints:
    paired by path, then by file name, then, when one of each is left, with each other (the data
    moved: a replay on another machine, a renamed file). ``None`` stands for a missing side."""
    if recorded is None or current is None:
        return []
    old, new = dict(recorded), dict(current)
    pairs: List[Tuple[str, Entry, Entry]] = []
    for path in [p for p in new if p in old]:
        pairs.append((path, old.pop(path), new.pop(path)))
    for path in list(new):
        same_name = [p for p in old if os.path.basename(p) == os.path.basename(path)]
        if len(same_name) == 1:
            pairs.append((f"{same_name[0]} → {path}", old.pop(same_name[0]), new.pop(path)))
    if len(old) == 1 and len(new) == 1:
        (a, entry_a), (b, entry_b) = old.popitem(), new.popitem()
        pairs.append((f"{a} → {b}", entry_a, entry_b))
    pairs += [(p, e, None) for p, e in old.items()]
    pairs += [(p, None, e) for p, e in new.items()]
    return pairs


def _file_change(label: str, old: Entry, new: Entry) -> List[str]:
    if old is None:
        return [f"{label}: a new file of the data ({_bytes(new.get('size'))})"]
    if new is None:
        return [f"{label}: no longer part of the data (was {_bytes(old.get('size'))})"]
    if old.get("sha256") == new.get("sha256") and old.get("size") == new.get("size"):
        return []
    a, b = old.get("size"), new.get("size")
    size = f"same size ({_number(a)} bytes)" if a == b else f"{_number(a)} → {_number(b)} bytes"
    return [f"{label} changed: {size}, sha256 {_short(old.get('sha256'))} → "
            f"{_short(new.get('sha256'))}"]


def _folder_change(label: str, old: Entry, new: Entry) -> List[str]:
    if old is None:
        return [f"{label}: a new folder of the data ({_files(new)})"]
    if new is None:
        return [f"{label}: no longer part of the data (had {_files(old)})"]
    if old.get("digest") == new.get("digest"):
        return []
    if old.get("files") != new.get("files"):
        line = (f"{label}: {_number(old.get('files'))} → {_number(new.get('files'))} files "
                f"({_sizes(old.get('bytes'), new.get('bytes'))})")
    elif old.get("bytes") != new.get("bytes"):
        line = (f"{label}: the same number of files ({_number(new.get('files'))}), "
                f"{_sizes(old.get('bytes'), new.get('bytes'))}")
    else:
        line = (f"{label}: the same {_files(new)} in total, but files were renamed, moved, "
                "or replaced by files of another size")
    classes = _class_changes(old.get("classes"), new.get("classes"))
    return [line + (f"; {classes}" if classes else "")]


def _class_changes(old: Any, new: Any, shown: int = 5) -> str:
    """The class folders whose count or size changed, the first ``shown`` of them."""
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return ""
    parts = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        if a is None:
            parts.append(f"{name}/ is new ({_files(b)})")
        elif b is None:
            parts.append(f"{name}/ is gone (had {_files(a)})")
        elif a.get("files") != b.get("files"):
            parts.append(f"{name}/ {_number(a.get('files'))} → {_number(b.get('files'))} files")
        else:
            parts.append(f"{name}/ {_sizes(a.get('bytes'), b.get('bytes'))}")
    more = f" and {len(parts) - shown} more class folders" if len(parts) > shown else ""
    return ", ".join(parts[:shown]) + more


def _files(entry: Mapping[str, Any]) -> str:
    n = entry.get("files")
    return f"{_number(n)} {'file' if n == 1 else 'files'}, {_bytes(entry.get('bytes'))}"


def _number(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else str(n)


def _bytes(n: Any) -> str:
    """A size in decimal units, as file managers show it: 950 bytes, 4.1 KB, 1.2 MB."""
    if not isinstance(n, int) or n < 1000:
        return f"{n} bytes"
    value, unit = float(n), "bytes"
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1000
        if value < 1000:
            break
    return f"{value:.1f} {unit}"


def _sizes(a: Any, b: Any) -> str:
    """``a → b`` in units, or in bytes where the rounded units would read the same."""
    if a == b:
        return _bytes(a)
    if _bytes(a) == _bytes(b):
        return f"{_number(a)} → {_number(b)} bytes"
    return f"{_bytes(a)} → {_bytes(b)}"


def _short(sha: Any) -> str:
    return f"{sha[:6]}…" if isinstance(sha, str) else str(sha)

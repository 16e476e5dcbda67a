"""The four patch kinds the API server accepts, on JSON-shaped dicts (inputs are not mutated).

- `merge_patch` (RFC 7386, `application/merge-patch+json`)
- `json_patch` (RFC 6902, `application/json-patch+json`, what `kubectl rollout undo` sends)
- `strategic_merge` (`application/strategic-merge-patch+json`, `kubectl set image`): lists
  with a merge key are merged by it, with `$setElementOrder/<field>`, `$patch:
  delete|replace|merge`, `$retainKeys` and `$deleteFromPrimitiveList/<field>`
- `apply` (server-side apply): the applied configuration merged over the live object, with
  fields a manager applied before and no longer applies removed.

Merge keys are looked up by field name, which is unambiguous for the objects served here.
"""

from __future__ import annotations

from typing import Any

# patchMergeKey of the list fields in core/apps types, by field name.
MERGE_KEYS: dict[str, str] = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "env": "name", "volumes": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath",
    "imagePullSecrets": "name", "conditions": "type", "hostAliases": "ip",
    "ownerReferences": "uid", "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name", "readinessGates": "conditionType",
}
# Primitive lists merged as sets (patchStrategy=merge).
SET_LISTS = frozenset({"finalizers"})


def clone(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts, lists, scalars); several times faster than
    copy.deepcopy, which matters on the controller's hot path."""
    if type(value) is dict:
        return {k: clone(v) for k, v in value.items()}
    if type(value) is list:
        return [clone(v) for v in value]
    return value


class PatchError(ValueError):
    """A patch that cannot be applied (the server answers 422, or 409 for a failed `test`)."""

    def __init__(self, message: str, code: int = 422) -> None:
        super().__init__(message)
        self.code = code


def merge_key(field: str, items: list[Any]) -> str | None:
    """The merge key of list `field`, or None when the list is replaced as a whole."""
    if field == "ports":
        sample = next((i for i in items if isinstance(i, dict)), None)
        if sample is None:
            return None
        return "containerPort" if "containerPort" in sample else "port"
    return MERGE_KEYS.get(field)


# --- RFC 7386 -------------------------------------------------------------------------

def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return clone(patch)
    result = clone(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- RFC 6902 -------------------------------------------------------------------------

def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str], path: str) -> Any:
    for part in parts:
        if isinstance(doc, dict):
            if part not in doc:
                raise PatchError(f"path {path!r} not found")
            doc = doc[part]
        elif isinstance(doc, list):
            try:
                doc = doc[int(part)]
            except (ValueError, IndexError):
                raise PatchError(f"path {path!r} not found") from None
        else:
            raise PatchError(f"path {path!r} not found")
    return doc


def _add(doc: Any, path: str, value: Any, replace: bool) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent = _walk(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise PatchError(f"path {path!r} not found for replace")
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-" and not replace:
            parent.append(value)
        else:
            try:
                index = int(last)
            except ValueError:
                raise PatchError(f"invalid index in {path!r}") from None
            if replace:
                if not 0 <= index < len(parent):
                    raise PatchError(f"path {path!r} not found for replace")
                parent[index] = value
            elif 0 <= index <= len(parent):
                parent.insert(index, value)
            else:
                raise PatchError(f"index out of range in {path!r}")
    else:
        raise PatchError(f"path {path!r} not found")
    return doc


def _remove(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent = _walk(doc, parts[:-1], path)
    last = parts[-1]
    try:
        if isinstance(parent, dict):
            return parent.pop(last)
        if isinstance(parent, list):
            return parent.pop(int(last))
    except (KeyError, ValueError, IndexError):
        pass
    raise PatchError(f"path {path!r} not found for remove")


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch; a failed `test` raises PatchError (code 422)."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations", 400)
    doc = clone(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid JSON patch operation {op!r}", 400)
        kind, path = op["op"], op["path"]
        if kind in ("add", "replace"):
            if "value" not in op:
                raise PatchError(f"{kind} at {path!r} has no value", 400)
            doc = _add(doc, path, clone(op["value"]), replace=kind == "replace")
        elif kind == "remove":
            _remove(doc, path)
        elif kind in ("move", "copy"):
            source = op.get("from", "")
            value = clone(_walk(doc, _pointer(source), source))
            if kind == "move":
                _remove(doc, source)
            doc = _add(doc, path, value, replace=False)
        elif kind == "test":
            if _walk(doc, _pointer(path), path) != op.get("value"):
                raise PatchError(f"test failed at {path!r}")
        else:
            raise PatchError(f"unknown JSON patch operation {kind!r}", 400)
    return doc


# --- strategic merge ------------------------------------------------------------------

def strategic_merge(target: Any, patch: Any) -> Any:
    """Apply a strategic merge patch to `target` (a dict)."""
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be an object", 400)
    return _smp_map(target if isinstance(target, dict) else {}, patch)


def _smp_map(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    directive = patch.get("$patch")
    if directive == "delete":
        return {}
    if directive == "replace":
        return {k: clone(v) for k, v in patch.items() if k != "$patch"}
    result = clone(target)
    orders: dict[str, list[Any]] = {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            if value.get("$patch") == "delete":
                result.pop(key, None)
            else:
                current = result.get(key)
                result[key] = _smp_map(current if isinstance(current, dict) else {}, value)
        elif isinstance(value, list):
            result[key] = _smp_list(key, result.get(key), value)
        else:
            result[key] = value
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _reorder(field, result[field], order)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _smp_list(field: str, current: Any, patch: list[Any]) -> list[Any]:
    current = current if isinstance(current, list) else []
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [clone(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    key = merge_key(field, patch + current)
    if key is None:
        if field in SET_LISTS:
            return list(current) + [v for v in patch if v not in current]
        return [clone(i) for i in patch]
    result = [clone(i) for i in current]
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(f"{field}: list items must be objects")
        if key not in item:
            raise PatchError(f"{field}: an item has no merge key {key!r}")
        index = next((n for n, c in enumerate(result)
                      if isinstance(c, dict) and c.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                result.pop(index)
            continue
        if index is None:
            result.append(_smp_map({}, item))
        else:
            result[index] = _smp_map(result[index], item)
    return result


def _reorder(field: str, items: list[Any], order: list[Any]) -> list[Any]:
    """Order `items` as `$setElementOrder` says; items it does not name keep their place after."""
    if not order:
        return items
    if not isinstance(order[0], dict):
        ranked = {v: n for n, v in enumerate(order)}
        return sorted(items, key=lambda v: ranked.get(v, len(ranked)))
    key = merge_key(field, order + items) or next(iter(order[0]))
    ranked = {o.get(key): n for n, o in enumerate(order) if isinstance(o, dict)}
    return sorted(items, key=lambda i: ranked.get(i.get(key) if isinstance(i, dict) else None,
                                                  len(ranked)))


# --- server-side apply ----------------------------------------------------------------

def removal_patch(previous: Any, current: Any) -> dict[str, Any]:
    """A strategic merge patch deleting what `previous` applied and `current` no longer does."""
    out: dict[str, Any] = {}
    if not isinstance(previous, dict) or not isinstance(current, dict):
        return out
    for key, old in previous.items():
        if key not in current:
            out[key] = None
            continue
        new = current[key]
        if isinstance(old, dict) and isinstance(new, dict):
            sub = removal_patch(old, new)
            if sub:
                out[key] = sub
        elif isinstance(old, list) and isinstance(new, list):
            mk = merge_key(key, old + new)
            if mk is None:
                continue  # atomic lists are replaced by the apply itself
            new_by_key = {i.get(mk): i for i in new if isinstance(i, dict)}
            items: list[Any] = []
            for item in old:
                if not isinstance(item, dict):
                    continue
                if item.get(mk) not in new_by_key:
                    items.append({mk: item.get(mk), "$patch": "delete"})
                else:
                    sub = removal_patch(item, new_by_key[item.get(mk)])
                    if sub:
                        sub[mk] = item.get(mk)
                        items.append(sub)
            if items:
                out[key] = items
    return out


def apply(live: dict[str, Any], applied: dict[str, Any],
          previous: dict[str, Any] | None) -> dict[str, Any]:
    """Server-side apply of `applied` over `live`, given what the same manager applied before."""
    result = live
    if previous:
        result = strategic_merge(result, removal_patch(previous, applied))
    return strategic_merge(result, applied)


# --- semantic comparison --------------------------------------------------------------

def prune(value: Any) -> Any:
    """`value` without nulls, empty maps, empty lists and empty strings (recursively)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            pv = prune(v)
            if pv not in (None, {}, [], ""):
                out[k] = pv
        return out
    if isinstance(value, list):
        return [prune(v) for v in value]
    return value

"""Pieces of the test Kubernetes API server that are plain functions: Status
errors, label and field selectors, the three patch formats, name and label
validation, structural-schema pruning for custom resources.

Everything follows what kube-apiserver v1.35 does for JSON clients; where this
is a subset, README.md says so.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from datetime import datetime, timezone

# ---------------------------------------------------------------- time


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- Status errors


class APIError(Exception):
    """An error answered as a metav1.Status object."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict:
        s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
             "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            s["details"] = self.details
        return s


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, group: str, name: str) -> APIError:
    return APIError(404, "NotFound", f'{_qualified(resource, group)} "{name}" not found',
                    {"name": name, "group": group, "kind": resource} if group else
                    {"name": name, "kind": resource})


def path_not_found() -> APIError:
    return APIError(404, "NotFound", "the server could not find the requested resource", {})


def already_exists(resource: str, group: str, name: str) -> APIError:
    d = {"name": name, "kind": resource}
    if group:
        d["group"] = group
    return APIError(409, "AlreadyExists", f'{_qualified(resource, group)} "{name}" already exists', d)


def conflict(resource: str, group: str, name: str, msg: str | None = None) -> APIError:
    d = {"name": name, "kind": resource}
    if group:
        d["group"] = group
    msg = msg or "the object has been modified; please apply your changes to the latest version and try again"
    return APIError(409, "Conflict",
                    f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {msg}', d)


def invalid(kind: str, group: str, name: str, causes: list[tuple[str, str, str]]) -> APIError:
    """causes: (reason, field, message) with reason FieldValueInvalid/Required/Forbidden/..."""
    parts = [f"{f}: {m}" for (_, f, m) in causes]
    msg = f'{kind}{"." + group if group else ""} "{name}" is invalid: '
    msg += parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    d = {"name": name, "kind": kind, "causes": [{"reason": r, "message": m, "field": f} for (r, f, m) in causes]}
    if group:
        d["group"] = group
    return APIError(422, "Invalid", msg, d)


def bad_request(msg: str) -> APIError:
    return APIError(400, "BadRequest", msg)


def forbidden(resource: str, group: str, name: str, msg: str) -> APIError:
    d = {"kind": resource}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    what = _qualified(resource, group) + (f' "{name}"' if name else "")
    return APIError(403, "Forbidden", f"{what} is forbidden: {msg}", d)


def gone(msg: str) -> APIError:
    return APIError(410, "Expired", msg)


def unauthorized() -> APIError:
    return APIError(401, "Unauthorized", "Unauthorized")


def internal(msg: str) -> APIError:
    return APIError(500, "InternalError", f"Internal error occurred: {msg}",
                    {"causes": [{"message": msg}]})


# ---------------------------------------------------------------- dotted paths


def get_path(obj, path: str):
    cur = obj
    for p in path.split("."):
        if not isinstance(cur, dict) or p not in cur:
            return None
        cur = cur[p]
    return cur


def meta(obj: dict) -> dict:
    m = obj.get("metadata")
    if not isinstance(m, dict):
        m = {}
        obj["metadata"] = m
    return m


# ---------------------------------------------------------------- label selectors

_LS_TOKEN = re.compile(r"\s*(!=|==|=|\(|\)|,|!|[^\s!=(),]+)")


class LabelSelector:
    """A parsed labelSelector: requirements (key, op, values) ANDed together."""

    def __init__(self, reqs):
        self.reqs = reqs

    @staticmethod
    def parse(text: str | None) -> "LabelSelector":
        if not text:
            return LabelSelector([])
        toks = []
        pos = 0
        while pos < len(text):
            m = _LS_TOKEN.match(text, pos)
            if not m:
                break
            toks.append(m.group(1))
            pos = m.end()
            while pos < len(text) and text[pos].isspace():
                pos += 1
        reqs = []
        i = 0

        def err(msg="invalid selector"):
            return bad_request(f"unable to parse requirement: {msg}: {text!r}")

        while i < len(toks):
            t = toks[i]
            if t == "!":
                if i + 1 >= len(toks):
                    raise err()
                reqs.append((toks[i + 1], "!", None))
                i += 2
            else:
                key = t
                op = toks[i + 1] if i + 1 < len(toks) else None
                if op in ("=", "==", "!="):
                    if i + 2 >= len(toks) or toks[i + 2] in (",", "(", ")"):
                        val = ""
                        i += 2
                    else:
                        val = toks[i + 2]
                        i += 3
                    reqs.append((key, "!=" if op == "!=" else "=", [val]))
                elif op in ("in", "notin"):
                    if i + 2 >= len(toks) or toks[i + 2] != "(":
                        raise err("expected '('")
                    j = i + 3
                    vals = []
                    while j < len(toks) and toks[j] != ")":
                        if toks[j] != ",":
                            vals.append(toks[j])
                        j += 1
                    if j >= len(toks):
                        raise err("expected ')'")
                    reqs.append((key, op, vals))
                    i = j + 1
                elif op is None or op == ",":
                    reqs.append((key, "exists", None))
                    i += 1
                else:
                    raise err(f"unexpected token {op!r}")
            if i < len(toks):
                if toks[i] != ",":
                    raise err("expected ','")
                i += 1
        for key, _, _ in reqs:
            if not valid_label_key(key):
                raise bad_request(f"unable to parse requirement: invalid label key {key!r}")
        return LabelSelector(reqs)

    @staticmethod
    def from_match(sel: dict | None) -> "LabelSelector":
        """A metav1.LabelSelector (matchLabels, matchExpressions)."""
        reqs = []
        if not sel:
            return LabelSelector(reqs)
        for k, v in (sel.get("matchLabels") or {}).items():
            reqs.append((k, "=", [v]))
        for e in sel.get("matchExpressions") or []:
            op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}.get(e.get("operator"))
            if op:
                reqs.append((e.get("key"), op, e.get("values")))
        return LabelSelector(reqs)

    def empty(self) -> bool:
        return not self.reqs

    def matches(self, labels: dict | None) -> bool:
        labels = labels or {}
        for key, op, vals in self.reqs:
            has = key in labels
            v = labels.get(key)
            if op == "=" and not (has and v == vals[0]):
                return False
            if op == "!=" and has and v == vals[0]:
                return False
            if op == "in" and not (has and v in vals):
                return False
            if op == "notin" and has and v in vals:
                return False
            if op == "exists" and not has:
                return False
            if op == "!" and has:
                return False
        return True


# ---------------------------------------------------------------- field selectors


class FieldSelector:
    def __init__(self, reqs):
        self.reqs = reqs  # (path, op, value) op in "=", "!="

    @staticmethod
    def parse(text: str | None, allowed: set[str] | None) -> "FieldSelector":
        reqs = []
        if not text:
            return FieldSelector(reqs)
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            m = re.match(r"^([^=!]+?)\s*(==|!=|=)\s*(.*)$", part)
            if not m:
                raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
            key, op, val = m.group(1).strip(), m.group(2), m.group(3).strip()
            if allowed is not None and key not in allowed:
                raise bad_request(f'field label not supported: {key}')
            reqs.append((key, "!=" if op == "!=" else "=", val))
        return FieldSelector(reqs)

    def empty(self) -> bool:
        return not self.reqs

    def name_equals(self) -> str | None:
        for k, op, v in self.reqs:
            if k == "metadata.name" and op == "=":
                return v
        return None

    def matches(self, obj: dict) -> bool:
        for key, op, val in self.reqs:
            got = get_path(obj, key)
            if isinstance(got, bool):
                got = "true" if got else "false"
            elif got is None:
                got = ""
            else:
                got = str(got)
            if (got == val) != (op == "="):
                return False
        return True


# ---------------------------------------------------------------- validation

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QNAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LVALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                 "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                 "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
             "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
             "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")


def name_problem(name: str, rule: str) -> str | None:
    if rule == "subdomain":
        if len(name) > 253:
            return "must be no more than 253 characters"
        if not _SUBDOMAIN.match(name):
            return SUBDOMAIN_MSG
    elif rule == "label":
        if len(name) > 63:
            return "must be no more than 63 characters"
        if not _LABEL.match(name):
            return LABEL_MSG
    else:  # path segment
        if name in (".", ".."):
            return f"may not be '{name}'"
        for c in ("/", "%"):
            if c in name:
                return f"may not contain '{c}'"
    return None


def valid_label_key(key: str) -> bool:
    if "/" in key:
        prefix, _, name = key.partition("/")
        if not prefix or len(prefix) > 253 or not _SUBDOMAIN.match(prefix):
            return False
    else:
        name = key
    return 0 < len(name) <= 63 and bool(_QNAME.match(name))


def metadata_problems(obj: dict) -> list[tuple[str, str, str]]:
    out = []
    m = obj.get("metadata") or {}
    labels = m.get("labels") or {}
    if not isinstance(labels, dict):
        return [("FieldValueInvalid", "metadata.labels", "must be a map")]
    for k, v in labels.items():
        if not valid_label_key(k):
            out.append(("FieldValueInvalid", "metadata.labels", f'Invalid value: "{k}": name part must consist '
                        "of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
                        "character, at most 63 characters, with an optional DNS subdomain prefix and '/'"))
        if not isinstance(v, str):
            out.append(("FieldValueInvalid", "metadata.labels", f"Invalid value: {v!r}: must be a string"))
        elif len(v) > 63 or not _LVALUE.match(v):
            out.append(("FieldValueInvalid", "metadata.labels", f'Invalid value: "{v}": a valid label must be an '
                        "empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and "
                        "end with an alphanumeric character, must be no more than 63 characters"))
    ann = m.get("annotations") or {}
    if isinstance(ann, dict):
        total = sum(len(k) + len(v if isinstance(v, str) else "") for k, v in ann.items())
        if total > 256 * 1024:
            out.append(("FieldValueTooLong", "metadata.annotations", "Too long: must have at most 262144 bytes"))
        for k in ann:
            if not valid_label_key(k.lower()):
                out.append(("FieldValueInvalid", "metadata.annotations", f'Invalid value: "{k}": invalid key'))
    refs = m.get("ownerReferences") or []
    controllers = 0
    for i, r in enumerate(refs):
        for f in ("apiVersion", "kind", "name", "uid"):
            if not r.get(f):
                out.append(("FieldValueRequired" if f != "apiVersion" else "FieldValueInvalid",
                            f"metadata.ownerReferences[{i}].{f}" if f != "apiVersion"
                            else f"metadata.ownerReferences[{i}].apiVersion",
                            "Required value: " + ("version must not be empty" if f == "apiVersion" else f"{f} must not be empty")))
        if r.get("controller"):
            controllers += 1
    if controllers > 1:
        out.append(("FieldValueInvalid", "metadata.ownerReferences",
                    "Invalid value: only one reference can have Controller set to true"))
    return out


def secret_key_ok(k: str) -> bool:
    return len(k) <= 253 and bool(_SECRET_KEY.match(k)) and k not in (".", "..")


def b64_ok(v) -> bool:
    if not isinstance(v, str):
        return False
    try:
        base64.b64decode(v, validate=True)
        return True
    except Exception:
        return False


# ---------------------------------------------------------------- patches


def json_merge_patch(target, patch):
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = json_merge_patch(result.get(k), v)
    return result


def _ptr_parts(ptr: str):
    if ptr == "":
        return []
    if not ptr.startswith("/"):
        raise bad_request(f"invalid JSON pointer {ptr!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in ptr[1:].split("/")]


def json_patch(doc, ops):
    """RFC 6902."""
    if not isinstance(ops, list):
        raise bad_request("json patch must be a list of operations")
    doc = copy.deepcopy(doc)

    def parent(d, parts, create=False):
        cur = d
        for p in parts[:-1]:
            if isinstance(cur, list):
                cur = cur[int(p)]
            elif isinstance(cur, dict) and p in cur:
                cur = cur[p]
            else:
                raise APIError(422, "Invalid", f"jsonpatch: doc is missing path: /{'/'.join(parts)}")
        return cur

    def get(d, parts):
        cur = d
        for p in parts:
            try:
                cur = cur[int(p)] if isinstance(cur, list) else cur[p]
            except (KeyError, IndexError, ValueError, TypeError):
                raise APIError(422, "Invalid", f"jsonpatch: doc is missing path: /{'/'.join(parts)}")
        return cur

    def add(d, parts, val):
        if not parts:
            return val
        par = parent(d, parts)
        last = parts[-1]
        if isinstance(par, list):
            if last == "-":
                par.append(val)
            else:
                idx = int(last)
                if idx < 0 or idx > len(par):
                    raise APIError(422, "Invalid", "jsonpatch: index out of range")
                par.insert(idx, val)
        elif isinstance(par, dict):
            par[last] = val
        else:
            raise APIError(422, "Invalid", "jsonpatch: cannot add to a scalar")
        return d

    def remove(d, parts):
        par = parent(d, parts)
        last = parts[-1]
        try:
            if isinstance(par, list):
                return par.pop(int(last))
            return par.pop(last)
        except (KeyError, IndexError, ValueError):
            raise APIError(422, "Invalid", f"jsonpatch remove operation does not apply: doc is missing path: /{'/'.join(parts)}")

    for op in ops:
        kind = op.get("op")
        parts = _ptr_parts(op.get("path", ""))
        if kind == "add":
            doc = add(doc, parts, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            remove(doc, parts)
        elif kind == "replace":
            get(doc, parts)
            if not parts:
                doc = copy.deepcopy(op.get("value"))
            else:
                par = parent(doc, parts)
                if isinstance(par, list):
                    par[int(parts[-1])] = copy.deepcopy(op.get("value"))
                else:
                    par[parts[-1]] = copy.deepcopy(op.get("value"))
        elif kind == "move":
            frm = _ptr_parts(op.get("from", ""))
            v = remove(doc, frm)
            doc = add(doc, parts, v)
        elif kind == "copy":
            frm = _ptr_parts(op.get("from", ""))
            doc = add(doc, parts, copy.deepcopy(get(doc, frm)))
        elif kind == "test":
            if get(doc, parts) != op.get("value"):
                raise APIError(422, "Invalid", f"the server rejected our request due to an error in our request: "
                               f"testing value /{'/'.join(parts)} failed")
        else:
            raise bad_request(f"unexpected json patch operation {kind!r}")
    return doc


# Strategic merge: merge keys of the built-in types' lists (by field name; the
# ones kubectl apply meets on the resources this server serves).
SMP_MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "volumes": "name",
    "env": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath", "imagePullSecrets": "name",
    "hostAliases": "ip", "ownerReferences": "uid", "conditions": "type", "resourceClaims": "name",
    "taints": "key", "addresses": "type", "topologySpreadConstraints": "topologyKey",
}
SMP_PRIMITIVE_MERGE = {"finalizers"}


def _port_key(items):
    for it in items:
        if isinstance(it, dict) and "containerPort" in it:
            return "containerPort"
    return "port"


def _strip_directives(v):
    if isinstance(v, dict):
        return {k: _strip_directives(x) for k, x in v.items() if not k.startswith("$")}
    if isinstance(v, list):
        return [_strip_directives(x) for x in v if not (isinstance(x, dict) and "$patch" in x)]
    return v


def strategic_merge_patch(orig, patch, kind_is_builtin=True):
    """A faithful-enough subset of the strategic merge patch of apimachinery:
    merge keys by field name, $patch: replace|delete, $retainKeys,
    $setElementOrder/<f>, $deleteFromPrimitiveList/<f>, null deletes."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return _strip_directives({k: v for k, v in patch.items() if k != "$patch"})
    if patch.get("$patch") == "delete":
        return None
    result = copy.deepcopy(orig) if isinstance(orig, dict) else {}
    orders = {}
    retain = patch.get("$retainKeys")
    for k, v in patch.items():
        if k in ("$patch", "$retainKeys"):
            continue
        if k.startswith("$setElementOrder/"):
            orders[k.split("/", 1)[1]] = v
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            f = k.split("/", 1)[1]
            if isinstance(result.get(f), list):
                result[f] = [x for x in result[f] if x not in (v or [])]
            continue
        if v is None:
            result.pop(k, None)
            continue
        cur = result.get(k)
        if isinstance(v, list):
            mk = SMP_MERGE_KEYS.get(k) or ("ports" == k and _port_key(v + (cur or [])))
            if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in v):
                result[k] = _strip_directives(v)
            elif mk and isinstance(cur, list):
                result[k] = _merge_list_by_key(cur, v, mk)
            elif k in SMP_PRIMITIVE_MERGE and isinstance(cur, list):
                result[k] = cur + [x for x in v if x not in cur]
            else:
                result[k] = _strip_directives(v)
        elif isinstance(v, dict):
            result[k] = strategic_merge_patch(cur if isinstance(cur, dict) else {}, v)
            if result[k] is None:
                result.pop(k)
        else:
            result[k] = v
    for f, order in orders.items():
        lst = result.get(f)
        if not isinstance(lst, list):
            continue
        mk = SMP_MERGE_KEYS.get(f) or (f == "ports" and _port_key(lst))

        def ident(x):
            return x.get(mk) if (mk and isinstance(x, dict)) else x
        want = [ident(o) for o in order]
        ordered = sorted(lst, key=lambda x: want.index(ident(x)) if ident(x) in want else len(want))
        result[f] = ordered
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list_by_key(cur, patch_items, mk):
    out = copy.deepcopy(cur)
    for item in patch_items:
        if not isinstance(item, dict):
            out.append(item)
            continue
        key = item.get(mk)
        idx = next((i for i, x in enumerate(out) if isinstance(x, dict) and x.get(mk) == key), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(_strip_directives(item))
        else:
            out[idx] = strategic_merge_patch(out[idx], item)
    return out


def apply_merge(cur, applied, previous):
    """Server-side apply approximation: fields the manager applied before and
    no longer applies are removed, then the applied configuration is merged in
    (lists with a merge key merged by key, other lists replaced)."""
    if not isinstance(applied, dict):
        return copy.deepcopy(applied)
    result = copy.deepcopy(cur) if isinstance(cur, dict) else {}
    if isinstance(previous, dict):
        for k, pv in previous.items():
            if k not in applied:
                result.pop(k, None)
    for k, v in applied.items():
        pv = previous.get(k) if isinstance(previous, dict) else None
        c = result.get(k)
        if isinstance(v, dict) and isinstance(c, dict):
            result[k] = apply_merge(c, v, pv)
        elif isinstance(v, list) and isinstance(c, list) and (SMP_MERGE_KEYS.get(k) or k == "ports"):
            mk = SMP_MERGE_KEYS.get(k) or _port_key(v + c)
            prev_keys = {x.get(mk) for x in (pv or []) if isinstance(x, dict)}
            new_keys = {x.get(mk) for x in v if isinstance(x, dict)}
            merged = [x for x in c if not (isinstance(x, dict) and x.get(mk) in prev_keys - new_keys)]
            for item in v:
                idx = next((i for i, x in enumerate(merged) if isinstance(x, dict) and x.get(mk) == item.get(mk)), None)
                old_prev = next((x for x in (pv or []) if isinstance(x, dict) and x.get(mk) == item.get(mk)), None)
                if idx is None:
                    merged.append(copy.deepcopy(item))
                else:
                    merged[idx] = apply_merge(merged[idx], item, old_prev)
            result[k] = merged
        else:
            result[k] = copy.deepcopy(v)
    return result


# ---------------------------------------------------------------- structural schemas (CRDs)


def prune_and_validate(obj, schema: dict | None, path: str, errors: list, top=False, pruned=None):
    """Drops fields a structural schema does not know (unless
    x-kubernetes-preserve-unknown-fields), checks types, required and enum.
    Returns the pruned value."""
    if schema is None:
        return obj
    if obj is None:
        return None
    t = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(obj, (int, str)) or isinstance(obj, bool):
            errors.append(("FieldValueInvalid", path, f"Invalid value: {json.dumps(obj)}: {path} in body must be of type integer or string"))
        return obj
    typemap = {"string": str, "boolean": bool, "object": dict, "array": list}
    if t in typemap and not isinstance(obj, typemap[t]):
        errors.append(("FieldValueTypeInvalid", path, f'Invalid value: "{_jtype(obj)}": {path} in body must be of type {t}: "{_jtype(obj)}"'))
        return obj
    if t == "integer" and (not isinstance(obj, int) or isinstance(obj, bool)):
        if not (isinstance(obj, float) and obj.is_integer()):
            errors.append(("FieldValueTypeInvalid", path, f'Invalid value: "{_jtype(obj)}": {path} in body must be of type integer: "{_jtype(obj)}"'))
            return obj
    if t == "number" and (not isinstance(obj, (int, float)) or isinstance(obj, bool)):
        errors.append(("FieldValueTypeInvalid", path, f'Invalid value: "{_jtype(obj)}": {path} in body must be of type number: "{_jtype(obj)}"'))
        return obj
    if "enum" in schema and obj not in schema["enum"]:
        vals = ", ".join(json.dumps(v) for v in schema["enum"])
        errors.append(("FieldValueNotSupported", path, f"Unsupported value: {json.dumps(obj)}: supported values: {vals}"))
    if isinstance(obj, dict):
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields")
        out = {}
        for k, v in obj.items():
            sub = f"{path}.{k}" if path else k
            if top and k in ("apiVersion", "kind", "metadata"):
                out[k] = v
                continue
            if props is not None and k in props:
                if v is None and not props[k].get("nullable"):
                    continue
                out[k] = prune_and_validate(v, props[k], sub, errors, pruned=pruned)
            elif isinstance(addl, dict):
                out[k] = prune_and_validate(v, addl, sub, errors, pruned=pruned)
            elif addl is True or preserve or (props is None and t != "object"):
                out[k] = v
            elif pruned is not None:
                pruned.append(sub)
        for r in schema.get("required") or []:
            if r not in out:
                errors.append(("FieldValueRequired", f"{path}.{r}" if path else r, "Required value"))
        return out
    if isinstance(obj, list):
        items = schema.get("items")
        return [prune_and_validate(v, items, f"{path}[{i}]", errors, pruned=pruned)
                for i, v in enumerate(obj)] if items else obj
    return obj


def _jtype(v):
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null"



# ---------------------------------------------------------------- protobuf bodies (kubectl's typed clients)
# kubectl's typed clients (create secret/configmap/namespace/serviceaccount)
# send application/vnd.kubernetes.protobuf. Decoding covers those kinds and
# DeleteOptions; any other kind answers 415.

_S, _I, _B, _BYTES = "s", "i", "b", "bytes"
_PB_META = {1: ("name", _S), 2: ("generateName", _S), 3: ("namespace", _S), 5: ("uid", _S),
            6: ("resourceVersion", _S), 7: ("generation", _I), 11: ("labels", ("map", _S)),
            12: ("annotations", ("map", _S)), 13: ("ownerReferences", ("rep", "OwnerReference")),
            14: ("finalizers", ("rep", _S))}
PB_TYPES = {
    "ObjectMeta": _PB_META,
    "OwnerReference": {1: ("kind", _S), 3: ("name", _S), 4: ("uid", _S), 5: ("apiVersion", _S),
                       6: ("controller", _B), 7: ("blockOwnerDeletion", _B)},
    "Secret": {1: ("metadata", "ObjectMeta"), 2: ("data", ("map", _BYTES)), 3: ("type", _S),
               4: ("stringData", ("map", _S)), 5: ("immutable", _B)},
    "ConfigMap": {1: ("metadata", "ObjectMeta"), 2: ("data", ("map", _S)), 3: ("binaryData", ("map", _BYTES)),
                  4: ("immutable", _B)},
    "Namespace": {1: ("metadata", "ObjectMeta"), 2: ("spec", "NamespaceSpec")},
    "NamespaceSpec": {1: ("finalizers", ("rep", _S))},
    "ServiceAccount": {1: ("metadata", "ObjectMeta"), 3: ("imagePullSecrets", ("rep", "LocalObjectReference")),
                       4: ("automountServiceAccountToken", _B)},
    "LocalObjectReference": {1: ("name", _S)},
    "DeleteOptions": {1: ("gracePeriodSeconds", _I), 2: ("preconditions", "Preconditions"),
                      3: ("orphanDependents", _B), 4: ("propagationPolicy", _S), 5: ("dryRun", ("rep", _S))},
    "Preconditions": {1: ("uid", _S), 2: ("resourceVersion", _S)},
    "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SelfSubjectAccessReviewSpec")},
    "SelfSubjectAccessReviewSpec": {1: ("resourceAttributes", "ResourceAttributes")},
    "ResourceAttributes": {1: ("namespace", _S), 2: ("verb", _S), 3: ("group", _S), 4: ("version", _S),
                           5: ("resource", _S), 6: ("subresource", _S), 7: ("name", _S)},
}


def _pb_fields(buf: bytes):
    i = 0
    n = len(buf)

    def varint():
        nonlocal i
        shift = v = 0
        while True:
            b = buf[i]
            i += 1
            v |= (b & 0x7F) << shift
            if b < 0x80:
                return v
            shift += 7
    while i < n:
        key = varint()
        num, wt = key >> 3, key & 7
        if wt == 0:
            yield num, varint()
        elif wt == 2:
            ln = varint()
            yield num, buf[i:i + ln]
            i += ln
        elif wt == 1:
            yield num, buf[i:i + 8]
            i += 8
        elif wt == 5:
            yield num, buf[i:i + 4]
            i += 4
        else:
            raise ValueError("unsupported protobuf wire type")


def _pb_value(kind, raw):
    if kind == _S:
        return raw.decode()
    if kind == _BYTES:
        return base64.b64encode(raw).decode()
    if kind == _I:
        return raw if raw < (1 << 63) else raw - (1 << 64)
    if kind == _B:
        return bool(raw)
    return pb_decode_message(raw, kind)


def pb_decode_message(buf: bytes, typ: str) -> dict:
    spec = PB_TYPES[typ]
    out: dict = {}
    for num, raw in _pb_fields(buf):
        if num not in spec:
            continue
        name, kind = spec[num]
        if isinstance(kind, tuple):
            if kind[0] == "map":
                k = v = None
                for fn, fr in _pb_fields(raw):
                    if fn == 1:
                        k = fr.decode()
                    elif fn == 2:
                        v = _pb_value(kind[1], fr)
                out.setdefault(name, {})[k] = v if v is not None else ("" if kind[1] != _BYTES else "")
            else:
                out.setdefault(name, []).append(_pb_value(kind[1], raw))
        else:
            v = _pb_value(kind, raw)
            if v in ("", 0, False) and not isinstance(v, dict):
                continue  # proto2 writes empty fields; JSON omits them
            out[name] = v
    return out


def pb_decode_object(data: bytes) -> dict:
    """A k8s protobuf envelope ("k8s\\0" + runtime.Unknown) to a JSON-shaped dict."""
    if not data.startswith(b"k8s\x00"):
        raise ValueError("not a Kubernetes protobuf envelope")
    api_version = kind = ""
    raw = b""
    for num, val in _pb_fields(data[4:]):
        if num == 1:
            for fn, fv in _pb_fields(val):
                if fn == 1:
                    api_version = fv.decode()
                elif fn == 2:
                    kind = fv.decode()
        elif num == 2:
            raw = val
    if kind not in PB_TYPES:
        raise KeyError(kind)
    obj = pb_decode_message(raw, kind)
    if api_version:
        obj = {"apiVersion": api_version, "kind": kind, **obj}
    return obj

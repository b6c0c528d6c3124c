"""Every schema in schemas/ documents itself: each record, enum and fixed type
(top-level or nested in a field, a union, an array or a map) and each field of
every record has a non-empty "doc", since analysts read the schemas in a schema
registry. A pure walk over the JSON: no broker, no blockhub process."""
import glob
import json
import os

import pytest

from conftest import SCHEMAS

NAMED = ("record", "error", "enum", "fixed")


def missing_docs(schema, where):
    """The places under SCHEMA (reached by WHERE) that lack a non-empty doc."""
    out = []
    if isinstance(schema, list):  # a union
        for i, branch in enumerate(schema):
            out += missing_docs(branch, "%s[%d]" % (where, i))
        return out
    if not isinstance(schema, dict):  # a primitive or a reference to a named type
        return out
    kind = schema.get("type")
    if isinstance(kind, (dict, list)):  # {"type": {...}} or {"type": [...]}
        return missing_docs(kind, where)
    if kind in NAMED:
        where = "%s %s" % (kind, schema.get("name", "?")) if where == "" else \
            "%s (%s %s)" % (where, kind, schema.get("name", "?"))
        if not has_doc(schema):
            out.append(where)
    if kind in ("record", "error"):
        for f in schema.get("fields", []):
            fw = "%s.%s" % (where, f.get("name", "?"))
            if not has_doc(f):
                out.append(fw)
            out += missing_docs(f.get("type"), fw)
    elif kind == "array":
        out += missing_docs(schema.get("items"), where + "[]")
    elif kind == "map":
        out += missing_docs(schema.get("values"), where + "{}")
    return out


def has_doc(node):
    doc = node.get("doc")
    return isinstance(doc, str) and doc.strip() != ""


PATHS = sorted(glob.glob(os.path.join(SCHEMAS, "*.avsc")))


def test_there_are_schemas():
    assert len(PATHS) >= 7, PATHS


@pytest.mark.parametrize("path", PATHS, ids=os.path.basename)
def test_every_field_and_type_has_a_doc(path):
    with open(path, "rb") as f:
        schema = json.loads(f.read().decode("utf-8"))  # the whole file is UTF-8 JSON
    missing = missing_docs(schema, "")
    assert missing == [], "%s: no doc for %s" % (os.path.basename(path), ", ".join(missing))


def test_the_walk_finds_what_lacks_a_doc():
    """The walk itself reaches nested types in unions, arrays and maps."""
    schema = {"type": "record", "name": "R", "doc": "r", "fields": [
        {"name": "documented", "type": "string", "doc": "d"},
        {"name": "bare", "type": "long"},
        {"name": "blank", "type": "long", "doc": "  "},
        {"name": "u", "doc": "d", "type": ["null", {"type": "record", "name": "U", "fields": [
            {"name": "x", "type": "double"}]}]},
        {"name": "a", "doc": "d", "type": {"type": "array", "items": {
            "type": "enum", "name": "E", "symbols": ["s"]}}},
        {"name": "m", "doc": "d", "type": {"type": "map", "values": {
            "type": "record", "name": "M", "doc": "m", "fields": [
                {"name": "y", "type": {"type": "fixed", "name": "F", "size": 2}, "doc": "d"}]}}},
        {"name": "ref", "type": "U"},
    ]}
    assert missing_docs(schema, "") == [
        "record R.bare", "record R.blank", "record R.u[1] (record U)", "record R.u[1] (record U).x",
        "record R.a[] (enum E)", "record R.m{} (record M).y (fixed F)", "record R.ref"]

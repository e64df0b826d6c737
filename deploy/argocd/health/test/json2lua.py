#!/usr/bin/env python3
"""Prints a JSON document as a Lua 5.1 chunk returning the same value as a table.

This mirrors what Argo CD does before a health check runs: the live object (JSON) becomes a
Lua table in `obj`. JSON null becomes nil (the key is absent), as in Argo CD.
Usage: json2lua.py FILE.json > FILE.lua
"""
import json
import sys


def lua(value, indent=""):
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # %q-style quoting that Lua 5.1 reads back: escape backslash, quote and control bytes.
        out = []
        for ch in value:
            code = ord(ch)
            if ch in '\\"':
                out.append("\\" + ch)
            elif code < 32 or code == 127:
                out.append("\\%d" % code)
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'
    inner = indent + "  "
    if isinstance(value, list):
        items = [inner + lua(v, inner) + "," for v in value]
    else:
        items = [inner + "[" + lua(k) + "] = " + lua(v, inner) + ","
                 for k, v in value.items() if v is not None]
    if not items:
        return "{}"
    return "{\n" + "\n".join(items) + "\n" + indent + "}"


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        doc = json.load(f)
    sys.stdout.write("return " + lua(doc) + "\n")


if __name__ == "__main__":
    main()

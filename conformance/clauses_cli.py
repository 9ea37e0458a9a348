"""``virtio-conformance clauses``: list the catalog, show coverage, or sync with a spec."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("action", nargs="?", choices=["list", "sync"], default="list",
                        help="list (default) or sync against a spec checkout")
    parser.add_argument("--spec", type=Path, help="with sync: a virtio-spec checkout")
    parser.add_argument("--area", help="filter: area prefix, e.g. transport/pci")
    parser.add_argument("--level", help="filter: MUST, MUST NOT, SHOULD, SHOULD NOT, MAY")
    parser.add_argument("--actor", choices=["device", "driver"], help="filter: actor")
    parser.add_argument("--status", choices=["normative", "draft"], help="filter: status")
    parser.add_argument("--grep", help="filter: text in id, section or paraphrase")
    parser.add_argument("--checked", action="store_true", help="only clauses with checks")
    parser.add_argument("--coverage", action="store_true", help="per-area coverage counts")
    parser.add_argument("--format", choices=["table", "json"], default="table")


def run(args) -> int:
    from .catalog import coverage, load_catalog, sync
    from .checks import clauses_checked

    catalog = load_catalog()
    checked = clauses_checked()
    if args.action == "sync":
        if not args.spec:
            print("virtio-conformance: clauses sync needs --spec PATH (a virtio-spec checkout)",
                  file=sys.stderr)
            return 2
        diff = sync(catalog, args.spec)
        if args.format == "json":
            print(json.dumps(diff.to_json(), indent=1))
        else:
            print(diff.summary())
            for entry in diff.added:
                print(f"  added    {entry['id']}  [{entry.get('level', '')}]")
            for clause_id in diff.removed:
                print(f"  removed  {clause_id}")
            for entry in diff.changed:
                print(f"  changed  {entry['id']}")
            for entry in diff.renumbered:
                print(f"  renumbered {entry['old_id']} -> {entry['new_id']}")
        return 0
    if args.coverage:
        table = coverage(catalog, set(checked))
        if args.format == "json":
            print(json.dumps(table, indent=1))
        else:
            print(_coverage_table(table))
        return 0
    entries = catalog.filter(area=args.area, level=args.level, actor=args.actor,
                             status=args.status, text=args.grep)
    if args.checked:
        entries = [e for e in entries if e.id in checked]
    rows = []
    for e in entries:
        d = e.to_json() if hasattr(e, "to_json") else dict(vars(e))
        d["checks"] = checked.get(e.id, [])
        rows.append(d)
    if args.format == "json":
        print(json.dumps(rows, indent=1))
    else:
        for d in rows:
            mark = "*" if d["checks"] else " "
            print(f"{mark} {d['id']:70} {d['level']:10} {d.get('paraphrase', '')[:80]}")
        print(f"{len(rows)} clause(s); * = judged by a check", file=sys.stderr)
    return 0


def _coverage_table(table) -> str:
    rows = table.get("areas", table) if isinstance(table, dict) else table
    if isinstance(rows, dict):
        rows = [{"area": k, **v} for k, v in rows.items()]
    if not rows:
        return "(empty)"
    keys = list(rows[0].keys())
    lines = ["  ".join(f"{k:>12}" if k != "area" else f"{k:28}" for k in keys)]
    for r in rows:
        lines.append("  ".join(f"{str(r[k]):>12}" if k != "area" else f"{str(r[k]):28}"
                               for k in keys))
    return "\n".join(lines)

#!/usr/bin/python3
"""
Markdown table of conformance reports (the JSON files of wsconformance.py --report), one
row per case group, one column block per report: OK / NON-STRICT / INFORMATIONAL / FAILED.
(UNIMPLEMENTED is shown only when some case has it.)

    /usr/bin/python3 tests/conformance/report_table.py DIR/reference.json DIR/gateway.json ...
"""

import json
import os
import sys

NAMES = {
    "1": "Framing", "2": "Pings/Pongs", "3": "Reserved bits", "4": "Opcodes",
    "5": "Fragmentation", "6": "UTF-8 handling", "7": "Close handling",
    "9": "Limits/performance (scaled)", "10": "Misc (auto-fragmentation)",
}


def main(paths):
    if not paths:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    reports = [(os.path.splitext(os.path.basename(p))[0], json.load(open(p))) for p in paths]
    verdicts = ["OK", "NON-STRICT", "INFORMATIONAL", "FAILED"]
    if any(r["totals"].get("UNIMPLEMENTED") for _, r in reports):
        verdicts.insert(3, "UNIMPLEMENTED")
    short = {"OK": "OK", "NON-STRICT": "NS", "INFORMATIONAL": "INFO", "UNIMPLEMENTED": "UNIMPL",
             "FAILED": "FAILED"}
    groups = sorted({g for _, r in reports for g in r["summary"]}, key=int)
    head = ["group"] + ["%s %s" % (name, "/".join(short[v] for v in verdicts)) for name, _ in reports]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for g in groups:
        row = ["%s %s" % (g, NAMES.get(g, ""))]
        for _, r in reports:
            s = r["summary"].get(g)
            row.append("/".join(str(s[v]) for v in verdicts) if s else "-")
        print("| " + " | ".join(row) + " |")
    row = ["**all**"]
    for _, r in reports:
        row.append("**%s**" % "/".join(str(r["totals"][v]) for v in verdicts))
    print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/python3
"""
WebSocket conformance suite: the Autobahn|Testsuite "fuzzingclient" cases of groups 1-7,
9 (scaled) and 10, run against one ws:// echo server.

    /usr/bin/python3 tests/conformance/wsconformance.py ws://127.0.0.1:9001/ \
        --report report.json [--cases '1.*,7.7.*'] [--exclude '9.*'] [--g9-size-div 4]

Needs Debian's python3-autobahn (asyncio flavour; the cases are in abcases.py). Every case
runs on a fresh connection, one after the other, as the Autobahn fuzzing client does; a
case ends when the TCP connection is closed, or after --case-timeout seconds (then it is
FAILED).

Verdicts are Autobahn's: `behavior` (OK, NON-STRICT, INFORMATIONAL, UNIMPLEMENTED, FAILED)
and `behaviorClose` (OK, WRONG CODE, UNCLEAN, FAILED BY CLIENT, FAILED, INFORMATIONAL),
computed by the ported Case.onConnectionLost. Autobahn's report shows the two side by
side; this runner also folds them into one `verdict`, which is what the summary counts and
what the exit status is based on:

    behavior INFORMATIONAL/UNIMPLEMENTED  -> that
    behavior FAILED                       -> FAILED
    behaviorClose FAILED or UNCLEAN       -> FAILED      (Autobahn: red closing cell)
    behaviorClose WRONG CODE / FAILED BY CLIENT -> NON-STRICT at best (amber/yellow cell)
    otherwise                             -> behavior (OK or NON-STRICT)

Exit status: 0 when no case is FAILED, 1 otherwise, 2 on a usage or connection error.
"""

import argparse
import asyncio
import datetime
import fnmatch
import json
import os
import platform
import sys
import time
from urllib.parse import urlparse

sys.dont_write_bytecode = True  # no __pycache__ next to the suite
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import txaio  # noqa: E402

txaio.use_asyncio()

import autobahn  # noqa: E402
from autobahn.asyncio.websocket import WebSocketClientFactory, WebSocketClientProtocol  # noqa: E402
from autobahn.websocket.protocol import WebSocketProtocol  # noqa: E402

import abcases  # noqa: E402
from abcases import Case, case_id  # noqa: E402

VERDICTS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
GROUP_NAMES = {
    "1": "Framing", "2": "Pings/Pongs", "3": "Reserved Bits", "4": "Opcodes",
    "5": "Fragmentation", "6": "UTF-8 Handling", "7": "Close Handling",
    "9": "Limits/Performance", "10": "Misc (auto-fragmentation)",
}


def combined_verdict(behavior, behavior_close):
    if behavior in (Case.INFORMATIONAL, Case.UNIMPLEMENTED):
        return behavior
    if behavior not in (Case.OK, Case.NON_STRICT):
        return Case.FAILED
    if behavior_close in (Case.FAILED, Case.UNCLEAN):
        return Case.FAILED
    if behavior_close in (Case.WRONG_CODE, Case.FAILED_BY_CLIENT):
        return Case.NON_STRICT
    return behavior


def _show(data, limit=64):
    """Autobahn's asciiLogData: text when it decodes, else hex; shortened."""
    if isinstance(data, str):
        return data
    short = data[:limit]
    try:
        s = short.decode("utf-8")
    except UnicodeDecodeError:
        s = "0x" + short.hex()
    if len(data) > limit:
        s += " ... (%d octets)" % len(data)
    return s


def _clean_events(events):
    out = []
    for e in events:
        if e[0] == "message":
            out.append(["message", _show(e[1]), e[2]])
        elif e[0] in ("ping", "pong"):
            out.append([e[0], _show(e[1])])
        else:
            out.append(list(e))
    return out


class FuzzingClientProtocol(WebSocketClientProtocol):
    """The fuzzing helpers of autobahntestsuite's FuzzingProtocol on an asyncio client."""

    def connection_made(self, transport):
        self.connectionWasOpen = False
        self.caseStart = 0.0
        self.caseEnd = 0.0
        self.createWirelog = False
        self.txFrameStats = {}
        self.rxFrameStats = {}
        self.timers = []
        self.runCase = self.factory.Case(self)
        self.caseAgent = None
        super().connection_made(transport)

    # -- statistics (Autobahn counts frames by opcode; 10.1.1 needs the sent ones) --
    def logTxFrame(self, frameHeader, payload, repeatLength, chopsize, sync):
        self.txFrameStats[frameHeader.opcode] = self.txFrameStats.get(frameHeader.opcode, 0) + 1

    def logRxFrame(self, frameHeader, payload):
        self.rxFrameStats[frameHeader.opcode] = self.rxFrameStats.get(frameHeader.opcode, 0) + 1

    # -- timers of the original FuzzingProtocol --
    def _later(self, delay, fun):
        self.timers.append(asyncio.get_event_loop().call_later(delay, fun))

    def continueLater(self, delay, fun, tag=None):
        def run():
            if self.state != WebSocketProtocol.STATE_CLOSED:
                fun()
        self._later(delay, run)

    def killAfter(self, delay):
        def run():
            if self.state != WebSocketProtocol.STATE_CLOSED:
                self.failConnection()
        self._later(delay, run)

    def closeAfter(self, delay):
        def run():
            if self.state != WebSocketProtocol.STATE_CLOSED:
                self.sendClose()
        self._later(delay, run)

    def failConnection(self, code=WebSocketProtocol.CLOSE_STATUS_CODE_GOING_AWAY, reason="Going Away"):
        self._fail_connection(code, reason)

    def enableWirelog(self, enable):
        self.createWirelog = enable

    # -- events --
    def onConnect(self, response):
        self.caseAgent = response.headers.get("server")

    def onOpen(self):
        self.connectionWasOpen = True
        self.caseStart = time.monotonic()
        self.runCase.onOpen()

    def onMessage(self, payload, isBinary):
        self.runCase.onMessage(payload, isBinary)

    def onPong(self, payload):
        self.runCase.onPong(payload)

    def onClose(self, wasClean, code, reason):
        self.runCase.onClose(wasClean, code, reason)

    def connection_lost(self, exc):
        super().connection_lost(exc)
        for t in self.timers:
            t.cancel()
        self.caseEnd = time.monotonic()
        self.runCase.onConnectionLost(self.failedByMe)
        if not self.factory.done.done():
            self.factory.done.set_result(self)


def make_factory(url, case_cls, done):
    factory = WebSocketClientFactory(url, useragent="wsconformance (autobahn %s)" % autobahn.__version__)
    factory.protocol = FuzzingClientProtocol
    factory.Case = case_cls
    factory.done = done
    factory.logFrames = True  # only our counting hooks above
    factory.logOctets = False
    # as the Autobahn fuzzing client: fail by a closing handshake, not by dropping TCP
    factory.setProtocolOptions(failByDrop=False)
    return factory


async def run_case(url, host, port, case_cls, timeout):
    loop = asyncio.get_event_loop()
    done = loop.create_future()
    factory = make_factory(url, case_cls, done)
    cid = case_id(case_cls)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    t0 = time.monotonic()
    try:
        transport, proto = await asyncio.wait_for(loop.create_connection(factory, host, port), 10)
    except (OSError, asyncio.TimeoutError) as e:
        return {"id": cid, "verdict": Case.FAILED, "behavior": Case.FAILED, "behaviorClose": Case.FAILED,
                "result": "could not connect: %s" % e, "resultClose": "", "duration": 0,
                "description": case_cls.DESCRIPTION, "expectation": case_cls.EXPECTATION}
    timed_out = False
    try:
        await asyncio.wait_for(asyncio.shield(done), timeout)
    except asyncio.TimeoutError:
        timed_out = True
        transport.abort()
        try:
            await asyncio.wait_for(asyncio.shield(done), 5)
        except asyncio.TimeoutError:
            pass
    p = proto
    c = p.runCase
    if not done.done():  # connection_lost never came: judge what we have
        c.onConnectionLost(p.failedByMe)
    behavior, behavior_close = c.behavior, c.behaviorClose
    result, result_close = c.result, c.resultClose
    if timed_out:
        # the runner's own limit (the case's timers should have ended it before)
        behavior = behavior_close = Case.FAILED
        result = "Case did not end within the runner's per-case timeout of %g s. %s" % (timeout, result)
        result_close = "Connection aborted by the runner."
    verdict = combined_verdict(behavior, behavior_close)
    end = p.caseEnd or time.monotonic()
    return {
        "id": cid,
        "description": case_cls.DESCRIPTION,
        "expectation": case_cls.EXPECTATION,
        "started": started,
        "duration": int(round(1000 * (end - (p.caseStart or t0)))),
        "reportTime": c.reportTime,
        "verdict": verdict,
        "behavior": behavior,
        "behaviorClose": behavior_close,
        "result": result,
        "resultClose": result_close,
        "expected": {k: _clean_events(v) for k, v in c.expected.items()},
        "expectedClose": c.expectedClose,
        "received": _clean_events(c.received),
        "connectionWasOpen": bool(p.connectionWasOpen),
        "closedByMe": p.closedByMe,
        "failedByMe": p.failedByMe,
        "droppedByMe": p.droppedByMe,
        "wasClean": p.wasClean,
        "wasNotCleanReason": p.wasNotCleanReason,
        "localCloseCode": p.localCloseCode,
        "localCloseReason": _show(p.localCloseReason) if p.localCloseReason is not None else None,
        "remoteCloseCode": p.remoteCloseCode,
        "remoteCloseReason": p.remoteCloseReason,
        "txFrameStats": {str(k): v for k, v in sorted(p.txFrameStats.items())},
        "rxFrameStats": {str(k): v for k, v in sorted(p.rxFrameStats.items())},
        "agent": p.caseAgent,
    }


def select_cases(include, exclude):
    def match(cid, patterns):
        return any(fnmatch.fnmatchcase(cid, pat) for pat in patterns)
    out = []
    for cls in abcases.CASES:
        cid = case_id(cls)
        if include and not match(cid, include):
            continue
        if exclude and match(cid, exclude):
            continue
        out.append(cls)
    return out


def group_of(cid):
    return cid.split(".")[0]


def summarize(results):
    groups = {}
    for r in results:
        g = groups.setdefault(group_of(r["id"]), {v: 0 for v in VERDICTS})
        g[r["verdict"]] += 1
    return dict(sorted(groups.items(), key=lambda kv: int(kv[0])))


def print_summary(title, results, total_s, out=sys.stdout):
    summary = summarize(results)
    w = out.write
    w("\n%s\n" % title)
    w("%-6s %-26s %5s %11s %14s %14s %7s %6s\n" % ("group", "", "OK", "NON-STRICT", "INFORMATIONAL",
                                                   "UNIMPLEMENTED", "FAILED", "total"))
    tot = {v: 0 for v in VERDICTS}
    for g, counts in summary.items():
        for v in VERDICTS:
            tot[v] += counts[v]
        w("%-6s %-26s %5d %11d %14d %14d %7d %6d\n" % (
            g, GROUP_NAMES.get(g, ""), counts["OK"], counts["NON-STRICT"], counts["INFORMATIONAL"],
            counts["UNIMPLEMENTED"], counts["FAILED"], sum(counts.values())))
    w("%-6s %-26s %5d %11d %14d %14d %7d %6d\n" % (
        "all", "", tot["OK"], tot["NON-STRICT"], tot["INFORMATIONAL"], tot["UNIMPLEMENTED"],
        tot["FAILED"], sum(tot.values())))
    notable = [r for r in results if r["verdict"] != "OK"]
    if notable:
        w("\nCases not OK:\n")
        for r in notable:
            w("  %-8s %-13s behavior=%s close=%s code=%s: %s / %s\n" % (
                r["id"], r["verdict"], r["behavior"], r["behaviorClose"], r.get("remoteCloseCode"),
                r["result"], r["resultClose"]))
    w("ran %d cases in %.1f s\n" % (len(results), total_s))


async def run_all(args, url, host, port, cases):
    results = []
    for cls in cases:
        cid = case_id(cls)
        timeout = args.case_timeout
        r = await run_case(url, host, port, cls, timeout)
        results.append(r)
        if args.verbose:
            extra = " %d ms" % r["duration"] if r.get("reportTime") else ""
            print("%-8s %-13s (behavior %s, close %s, code %s)%s" % (
                cid, r["verdict"], r["behavior"], r["behaviorClose"], r.get("remoteCloseCode"), extra),
                flush=True)
        if r["result"].startswith("could not connect"):
            print("error: case %s: %s" % (cid, r["result"]), file=sys.stderr)
            return results, False
    return results, True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url", help="ws:// URL of an echo server")
    ap.add_argument("--report", help="write a JSON report to this file")
    ap.add_argument("--agent", help="name of the server under test in the report")
    ap.add_argument("--cases", default="*", help="comma-separated case patterns to run (fnmatch, e.g. '1.*,6.4.*') [*]")
    ap.add_argument("--exclude", default="", help="comma-separated case patterns to skip")
    ap.add_argument("--case-timeout", type=float, default=30.0,
                    help="seconds after which a case that is still running is FAILED [30]")
    ap.add_argument("--g9-size-div", type=int, default=abcases.G9["size_div"],
                    help="divide the message sizes of cases 9.1-9.6 by this [1: Autobahn's sizes, up to 16 MiB]")
    ap.add_argument("--g9-count-div", type=int, default=abcases.G9["count_div"],
                    help="divide the message counts of cases 9.7/9.8 by this [1: 1000 messages]")
    ap.add_argument("--max-message-size", type=int, default=None, metavar="OCTETS",
                    help="the server's message size limit: cases 9.1-9.6 whose (scaled) message is "
                         "longer expect the connection to be failed with 1009 instead of an echo")
    ap.add_argument("--list", action="store_true", help="list the selected cases and exit")
    ap.add_argument("-q", "--quiet", action="store_true", help="no line per case")
    args = ap.parse_args(argv)
    args.verbose = not args.quiet

    u = urlparse(args.url)
    if u.scheme != "ws" or not u.hostname:
        ap.error("need a ws:// URL")
    host, port = u.hostname, u.port or 80
    abcases.G9["size_div"] = max(1, args.g9_size_div)
    abcases.G9["count_div"] = max(1, args.g9_count_div)
    abcases.G9["limit"] = args.max_message_size

    include = [p.strip() for p in args.cases.split(",") if p.strip()]
    exclude = [p.strip() for p in args.exclude.split(",") if p.strip()]
    cases = select_cases(include, exclude)
    if args.list:
        for cls in cases:
            print("%-8s %s" % (case_id(cls), cls.DESCRIPTION))
        return 0
    if not cases:
        print("error: no case selected", file=sys.stderr)
        return 2

    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.monotonic()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        results, ok = loop.run_until_complete(run_all(args, args.url, host, port, cases))
    finally:
        loop.close()
    total = time.monotonic() - t0
    agent = args.agent or next((r.get("agent") for r in results if r.get("agent")), None) or "unknown"

    print_summary("WebSocket conformance (Autobahn|Testsuite cases) against %s [%s]" % (args.url, agent),
                  results, total)
    if args.report:
        report = {
            "suite": "Autobahn|Testsuite fuzzingclient cases 1-7, 9 (scaled), 10; port in tests/conformance",
            "url": args.url,
            "agent": agent,
            "started": started.isoformat(timespec="seconds"),
            "duration_s": round(total, 1),
            "client": {"autobahn": autobahn.__version__, "python": platform.python_version()},
            "g9_scaling": {
                "size_div": abcases.G9["size_div"], "count_div": abcases.G9["count_div"],
                "max_message_size": abcases.G9["limit"],
                "note": "message sizes of 9.1-9.6 divided by size_div (fragment and chop sizes kept), "
                        "message counts of 9.7/9.8 divided by count_div",
            },
            "case_timeout_s": args.case_timeout,
            "verdict_rule": "verdict = behavior, except: behaviorClose FAILED/UNCLEAN -> FAILED, "
                            "behaviorClose WRONG CODE/FAILED BY CLIENT -> at most NON-STRICT; "
                            "INFORMATIONAL/UNIMPLEMENTED kept",
            "summary": summarize(results),
            "totals": {v: sum(1 for r in results if r["verdict"] == v) for v in VERDICTS},
            "cases": {r["id"]: r for r in results},
        }
        with open(args.report, "w") as f:
            json.dump(report, f, indent=1, default=str)
            f.write("\n")
    if not ok:
        return 2
    return 1 if any(r["verdict"] == Case.FAILED for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

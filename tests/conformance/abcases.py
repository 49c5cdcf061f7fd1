# SPDX-License-Identifier: Apache-2.0 (a port of crossbario/autobahn-testsuite case files)
"""
The Autobahn|Testsuite "fuzzingclient" cases of groups 1-7, 9 and 10, ported to Python 3.

Ported from crossbario/autobahn-testsuite (autobahntestsuite/case/*.py, Apache License 2.0,
Copyright (c) typedef int GmbH). The case numbering, the frames each case sends, the timers
(killAfter / closeAfter / continueLater) and the expected outcomes are those of the
original; the changes are the ones Python 3 requires (payloads are bytes, one-byte slices
instead of indexing) plus the scaling of group 9 (see G9 below), which the original does
not have.

Each case drives `self.p`, an autobahn WebSocketClientProtocol (see wsconformance.py) that
offers the fuzzing helpers of the original FuzzingProtocol: sendFrame (may send invalid
frames), sendMessage, beginMessage/beginMessageFrame/sendMessageFrameData/endMessage,
sendClose, sendCloseFrame (may send invalid close frames), killAfter, closeAfter,
continueLater.
"""

import re

from autobahn.websocket.protocol import WebSocketProtocol

__all__ = ["Case", "CASES", "G9", "case_id"]

# Group 9 (limits/performance) scaling. size_div divides the message sizes of 9.1-9.6,
# count_div the message counts of 9.7/9.8. Fragment sizes (9.3/9.4) and chop sizes
# (9.5/9.6) are kept as in the original; a fragment larger than the scaled message means
# the message goes out as one frame (as 9.3.9/9.4.9 do in the original).
#
# limit: when set (--max-message-size), a 9.1-9.6 message longer than this many octets is
# expected to be refused: the peer fails the connection with 1009 (Message Too Big) and
# echoes nothing. Autobahn has no such mode; it checks a server's configured limits.
G9 = {"size_div": 1, "count_div": 1, "limit": None}


def g9_size(n):
    return max(1, n // G9["size_div"])


def g9_count(n):
    return max(1, n // G9["count_div"])


def case_id(cls):
    m = re.match(r"Case(\d+(?:_\d+)*)$", cls.__name__)
    return m.group(1).replace("_", ".")


class Case:
    """Port of autobahntestsuite/case/case.py (same verdict logic)."""

    FAILED = "FAILED"
    OK = "OK"
    NON_STRICT = "NON-STRICT"
    WRONG_CODE = "WRONG CODE"
    UNCLEAN = "UNCLEAN"
    FAILED_BY_CLIENT = "FAILED BY CLIENT"
    INFORMATIONAL = "INFORMATIONAL"
    UNIMPLEMENTED = "UNIMPLEMENTED"

    DESCRIPTION = ""
    EXPECTATION = ""

    def __init__(self, protocol):
        self.p = protocol
        self.received = []
        self.expected = {}
        self.expectedClose = {}
        self.behavior = Case.FAILED
        self.behaviorClose = Case.FAILED
        self.result = "Actual events differ from any expected."
        self.resultClose = "TCP connection was dropped without close handshake"
        self.reportTime = False
        self.suppressClose = False
        self.passed = False
        self.init()

    def init(self):
        pass

    def onOpen(self):
        pass

    def onMessage(self, msg, binary):
        self.received.append(("message", msg, binary))
        self.finishWhenDone()

    def onPing(self, payload):
        self.received.append(("ping", payload))
        self.finishWhenDone()

    def onPong(self, payload):
        self.received.append(("pong", payload))
        self.finishWhenDone()

    def onClose(self, wasClean, code, reason):
        pass

    def compare(self, obj1, obj2):
        return obj1 == obj2

    def onConnectionLost(self, failedByMe):
        for e in self.expected:
            if self.compare(self.received, self.expected[e]):
                self.behavior = e
                self.passed = True
                self.result = "Actual events match at least one expected."
                break

        if self.p.connectionWasOpen:
            if self.expectedClose["closedByMe"] != self.p.closedByMe:
                self.behaviorClose = Case.FAILED
                self.resultClose = "The connection was failed by the wrong endpoint"
            elif self.expectedClose["requireClean"] and not self.p.wasClean:
                self.behaviorClose = Case.UNCLEAN
                self.resultClose = "The spec requires the connection to be failed cleanly here"
            elif self.p.remoteCloseCode is not None and self.p.remoteCloseCode not in self.expectedClose["closeCode"]:
                self.behaviorClose = Case.WRONG_CODE
                self.resultClose = "The close code should have been %s or empty" % ",".join(
                    map(str, self.expectedClose["closeCode"]))
            elif not self.p.factory.isServer and self.p.droppedByMe:
                self.behaviorClose = Case.FAILED_BY_CLIENT
                self.resultClose = "It is preferred that the server close the TCP connection"
            else:
                self.behaviorClose = Case.OK
                self.resultClose = "Connection was properly closed"

            # for UTF-8 tests, closing by the wrong endpoint means case failure, since the
            # peer then did not detect the invalid UTF-8 at all
            if self.expectedClose.get("closedByWrongEndpointIsFatal", False) and \
                    self.expectedClose["closedByMe"] != self.p.closedByMe:
                self.behavior = Case.FAILED
        else:
            self.behaviorClose = Case.FAILED
            self.resultClose = "The WebSocket opening handshake was never completed!"

    def finishWhenDone(self):
        # if we match at least one expected outcome check if we are supposed to start the
        # closing handshake and if so, do it (original logic, kept as is)
        for e in self.expected:
            if not self.compare(self.received, self.expected[e]):
                return
        if self.expectedClose["closedByMe"] and not self.suppressClose:
            self.p.sendClose(self.expectedClose["closeCode"][0])


P = WebSocketProtocol
NORMAL = P.CLOSE_STATUS_CODE_NORMAL
PROTOCOL_ERROR = P.CLOSE_STATUS_CODE_PROTOCOL_ERROR
INVALID_PAYLOAD = P.CLOSE_STATUS_CODE_INVALID_PAYLOAD


def _clean_close(case):
    case.expectedClose = {"closedByMe": True, "closeCode": [NORMAL], "requireClean": True}


def _peer_fails(case, code=PROTOCOL_ERROR, fatal=False):
    case.expectedClose = {"closedByMe": False, "closeCode": [code], "requireClean": False}
    if fatal:
        case.expectedClose["closedByWrongEndpointIsFatal"] = True


CASES = []


def register(*classes):
    CASES.extend(classes)
    return classes[0] if len(classes) == 1 else classes


# ---------------------------------------------------------------------------------------
# 1 Framing: 1.1 text messages, 1.2 binary messages
# ---------------------------------------------------------------------------------------

def _framing_case(name, opcode, length, chopsize, kill):
    byte = b"*" if opcode == 1 else b"\xfe"
    kind = "text" if opcode == 1 else "binary"
    desc = "Send %s message with payload of length %d." % (kind, length)
    if chopsize:
        desc = desc[:-1] + ". Sent out data in chops of %d octets." % chopsize

    def onOpen(self):
        payload = byte * length
        self.expected[Case.OK] = [("message", payload, opcode == 2)]
        _clean_close(self)
        self.p.sendFrame(opcode=opcode, payload=payload, chopsize=chopsize)
        self.p.killAfter(kill)

    return type(name, (Case,), {
        "DESCRIPTION": desc,
        "EXPECTATION": "Receive echo'ed %s message (with payload as sent). Clean close with normal code." % kind,
        "onOpen": onOpen})


for _op, _sub in ((1, 1), (2, 2)):
    for _i, (_len, _chop, _kill) in enumerate([(0, None, 1), (125, None, 1), (126, None, 1),
                                               (127, None, 1), (128, None, 1),
                                               (65535, None, 10), (65536, None, 10),
                                               (65536, 997, 10)], 1):
        register(_framing_case("Case1_%d_%d" % (_sub, _i), _op, _len, _chop, _kill))


# ---------------------------------------------------------------------------------------
# 2 Pings/Pongs
# ---------------------------------------------------------------------------------------

class Case2_1(Case):
    DESCRIPTION = "Send ping without payload."
    EXPECTATION = "Pong (with empty payload) is sent in reply to Ping. Clean close with normal code."

    def onOpen(self):
        self.expected[Case.OK] = [("pong", b"")]
        _clean_close(self)
        self.p.sendFrame(opcode=9)
        self.p.closeAfter(1)


def _ping_case(name, payload, chopsize, wait, desc):
    def onOpen(self):
        self.expected[Case.OK] = [("pong", payload)]
        _clean_close(self)
        self.p.sendFrame(opcode=9, payload=payload, chopsize=chopsize)
        self.p.closeAfter(wait)

    return type(name, (Case,), {
        "DESCRIPTION": desc,
        "EXPECTATION": "Pong with payload echo'ed is sent in reply to Ping. Clean close with normal code.",
        "onOpen": onOpen})


Case2_2 = _ping_case("Case2_2", b"Hello, world!", None, 1, "Send ping with small text payload.")
Case2_3 = _ping_case("Case2_3", b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff", None, 1,
                     "Send ping with small binary (non UTF-8) payload.")
Case2_4 = _ping_case("Case2_4", b"\xfe" * 125, None, 1, "Send ping with binary payload of 125 octets.")


class Case2_5(Case):
    DESCRIPTION = "Send ping with binary payload of 126 octets."
    EXPECTATION = ("Connection is failed immediately (1002/Protocol Error), since control frames are "
                   "only allowed to have payload up to and including 125 octets.")

    def onOpen(self):
        self.expected[Case.OK] = []
        _peer_fails(self)
        self.p.sendFrame(opcode=9, payload=b"\xfe" * 126)
        self.p.killAfter(1)


Case2_6 = _ping_case("Case2_6", b"\xfe" * 125, 1, 2,
                     "Send ping with binary payload of 125 octets, send in octet-wise chops.")


class Case2_7(Case):
    DESCRIPTION = "Send unsolicited pong without payload. Verify nothing is received. Clean close with normal code."
    EXPECTATION = "Nothing."

    def onOpen(self):
        self.expected[Case.OK] = []
        _clean_close(self)
        self.p.sendFrame(opcode=10)
        self.p.sendClose(NORMAL)
        self.p.closeAfter(1)


class Case2_8(Case):
    DESCRIPTION = ("Send unsolicited pong with payload. Verify nothing is received. "
                   "Clean close with normal code.")
    EXPECTATION = "Nothing."

    def onOpen(self):
        self.expected[Case.OK] = []
        _clean_close(self)
        self.p.sendFrame(opcode=10, payload=b"unsolicited pong payload")
        self.p.sendClose(NORMAL)
        self.p.closeAfter(1)


class Case2_9(Case):
    DESCRIPTION = "Send unsolicited pong with payload. Send ping with payload. Verify pong for ping is received."
    EXPECTATION = "Nothing in reply to own Pong, but Pong with payload echo'ed in reply to Ping. Clean close with normal code."

    def onOpen(self):
        payload = b"ping payload"
        self.expected[Case.OK] = [("pong", payload)]
        _clean_close(self)
        self.p.sendFrame(opcode=10, payload=b"unsolicited pong payload")
        self.p.sendFrame(opcode=9, payload=payload)
        self.p.closeAfter(1)


class Case2_10(Case):
    DESCRIPTION = "Send 10 Pings with payload."
    EXPECTATION = "Pongs for our Pings with all the payloads. Note: This is not required by the Spec .. but we check for this behaviour anyway. Clean close with normal code."

    def init(self):
        self.chopsize = None

    def onOpen(self):
        self.expected[Case.OK] = []
        for i in range(10):
            payload = b"payload-%d" % i
            self.expected[Case.OK].append(("pong", payload))
            self.p.sendFrame(opcode=9, payload=payload, chopsize=self.chopsize)
        _clean_close(self)
        self.p.closeAfter(3)


class Case2_11(Case2_10):
    DESCRIPTION = "Send 10 Pings with payload. Send out octets in octet-wise chops."

    def init(self):
        self.chopsize = 1


register(Case2_1, Case2_2, Case2_3, Case2_4, Case2_5, Case2_6, Case2_7, Case2_8, Case2_9,
         Case2_10, Case2_11)


# ---------------------------------------------------------------------------------------
# 3 Reserved bits
# ---------------------------------------------------------------------------------------

class Case3_1(Case):
    DESCRIPTION = "Send small text message with <b>RSV = 1</b>."
    EXPECTATION = "The connection is failed immediately (1002/protocol error), since RSV must be 0, when no extension defining RSV meaning has been negotiated."

    def onOpen(self):
        self.expected[Case.OK] = []
        _peer_fails(self)
        self.p.sendFrame(opcode=1, payload=b"Hello, world!", rsv=1)
        self.p.killAfter(1)


def _rsv_echo_then_bad(name, rsv, sync, chopsize, desc):
    def onOpen(self):
        payload = b"Hello, world!"
        self.expected[Case.OK] = [("message", payload, False)]
        self.expected[Case.NON_STRICT] = []
        _peer_fails(self)
        self.p.sendFrame(opcode=1, payload=payload, sync=sync, chopsize=chopsize)
        self.p.sendFrame(opcode=1, payload=payload, rsv=rsv, sync=sync, chopsize=chopsize)
        self.p.sendFrame(opcode=9, sync=sync, chopsize=chopsize)
        self.p.killAfter(1)

    return type(name, (Case,), {
        "DESCRIPTION": desc,
        "EXPECTATION": "Echo for first message is received, but then connection is failed immediately, since RSV must be 0, when no extension defining RSV meaning has been negotiated. The Pong is not received.",
        "onOpen": onOpen})


Case3_2 = _rsv_echo_then_bad("Case3_2", 2, False, None,
                             "Send small text message, then send again with <b>RSV = 2</b>, then send Ping.")
Case3_3 = _rsv_echo_then_bad("Case3_3", 3, True, None,
                             "Send small text message, then send again with <b>RSV = 3</b>, then send Ping. Octets are sent in frame-wise chops. Octets are sent in frame-wise chops.")
Case3_4 = _rsv_echo_then_bad("Case3_4", 4, False, 1,
                             "Send small text message, then send again with <b>RSV = 4</b>, then send Ping. Octets are sent in octet-wise chops.")


def _rsv_only(name, opcode, payload, rsv, desc):
    def onOpen(self):
        self.expected[Case.OK] = []
        _peer_fails(self)
        self.p.sendFrame(opcode=opcode, payload=payload, rsv=rsv)
        self.p.killAfter(1)

    return type(name, (Case,), {
        "DESCRIPTION": desc,
        "EXPECTATION": "The connection is failed immediately, since RSV must be 0.",
        "onOpen": onOpen})


Case3_5 = _rsv_only("Case3_5", 2, b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff", 5,
                    "Send small binary message with <b>RSV = 5</b>.")
Case3_6 = _rsv_only("Case3_6", 2, b"Hello, world!", 6, "Send small binary message with <b>RSV = 6</b>.")
Case3_7 = _rsv_only("Case3_7", 8, b"", 7, "Send small close message with <b>RSV = 7</b>.")

register(Case3_1, Case3_2, Case3_3, Case3_4, Case3_5, Case3_6, Case3_7)


# ---------------------------------------------------------------------------------------
# 4 Opcodes: 4.1 non-control (3-7), 4.2 control (11-15)
# ---------------------------------------------------------------------------------------

def _reserved_opcode(name, opcode, payload):
    def onOpen(self):
        self.expected[Case.OK] = []
        _peer_fails(self)
        self.p.sendFrame(opcode=opcode, payload=payload)
        self.p.killAfter(1)

    return type(name, (Case,), {
        "DESCRIPTION": "Send frame with reserved %s <b>Opcode = %d</b>." % (
            "non-control" if opcode < 8 else "control", opcode),
        "EXPECTATION": "The connection is failed immediately.",
        "onOpen": onOpen})


def _echo_then_reserved_opcode(name, opcode, with_payload, chopsize):
    def onOpen(self):
        payload = b"Hello, world!"
        self.expected[Case.OK] = [("message", payload, False)]
        self.expected[Case.NON_STRICT] = []
        _peer_fails(self)
        self.p.sendFrame(opcode=1, payload=payload, chopsize=chopsize)
        self.p.sendFrame(opcode=opcode, payload=payload if with_payload else b"", chopsize=chopsize)
        self.p.sendFrame(opcode=9, chopsize=chopsize)
        self.p.killAfter(1)

    return type(name, (Case,), {
        "DESCRIPTION": "Send small text message, then send frame with reserved %s <b>Opcode = %d</b>%s, then send Ping%s." % (
            "non-control" if opcode < 8 else "control", opcode,
            " and non-empty payload" if with_payload else "",
            ". Octets are sent in octet-wise chops" if chopsize else ""),
        "EXPECTATION": "Echo for first message is received, but then connection is failed immediately, since reserved opcode frame is used. A Pong is not received.",
        "onOpen": onOpen})


register(_reserved_opcode("Case4_1_1", 3, b""),
         _reserved_opcode("Case4_1_2", 4, b"reserved opcode payload"),
         _echo_then_reserved_opcode("Case4_1_3", 5, False, None),
         _echo_then_reserved_opcode("Case4_1_4", 6, True, None),
         _echo_then_reserved_opcode("Case4_1_5", 7, True, 1),
         _reserved_opcode("Case4_2_1", 11, b""),
         _reserved_opcode("Case4_2_2", 12, b"reserved opcode payload"),
         _echo_then_reserved_opcode("Case4_2_3", 13, False, None),
         _echo_then_reserved_opcode("Case4_2_4", 14, True, None),
         _echo_then_reserved_opcode("Case4_2_5", 15, True, 1))


# ---------------------------------------------------------------------------------------
# 5 Fragmentation
# ---------------------------------------------------------------------------------------

class Case5_1(Case):
    DESCRIPTION = "Send Ping fragmented into 2 fragments."
    EXPECTATION = "Connection is failed immediately, since control message MUST NOT be fragmented."
    OPCODE = 9

    def onOpen(self):
        self.expected[Case.OK] = []
        _peer_fails(self)
        self.p.sendFrame(opcode=self.OPCODE, fin=False, payload=b"fragment1")
        self.p.sendFrame(opcode=0, fin=True, payload=b"fragment2")
        self.p.killAfter(1)


class Case5_2(Case5_1):
    DESCRIPTION = "Send Pong fragmented into 2 fragments."
    OPCODE = 10


def _two_fragments(name, sync, chopsize, ping, desc):
    def onOpen(self):
        fragments = [b"fragment1", b"fragment2"]
        ping_payload = b"ping payload"
        exp = [("message", b"".join(fragments), False)]
        if ping:
            exp.insert(0, ("pong", ping_payload))
        self.expected[Case.OK] = exp
        _clean_close(self)
        self.p.sendFrame(opcode=1, fin=False, payload=fragments[0], sync=sync, chopsize=chopsize)
        if ping:
            self.p.sendFrame(opcode=9, fin=True, payload=ping_payload, sync=sync, chopsize=chopsize)
        self.p.sendFrame(opcode=0, fin=True, payload=fragments[1], sync=sync, chopsize=chopsize)
        self.p.closeAfter(1)

    return type(name, (Case,), {
        "DESCRIPTION": desc,
        "EXPECTATION": ("A pong is received, then the message is echo'ed back to us." if ping
                        else "Message is processed and echo'ed back to us."),
        "onOpen": onOpen})


Case5_3 = _two_fragments("Case5_3", False, None, False, "Send text Message fragmented into 2 fragments.")
Case5_4 = _two_fragments("Case5_4", True, None, False,
                         "Send text Message fragmented into 2 fragments, octets are sent in frame-wise chops.")
Case5_5 = _two_fragments("Case5_5", False, 1, False,
                         "Send text Message fragmented into 2 fragments, octets are sent in octet-wise chops.")
Case5_6 = _two_fragments("Case5_6", False, None, True,
                         "Send text Message fragmented into 2 fragments, one ping with payload in-between.")
Case5_7 = _two_fragments("Case5_7", True, None, True,
                         "Send text Message fragmented into 2 fragments, one ping with payload in-between. Octets are sent in frame-wise chops.")
Case5_8 = _two_fragments("Case5_8", False, 1, True,
                         "Send text Message fragmented into 2 fragments, one ping with payload in-between. Octets are sent in octet-wise chops.")


def _nothing_to_continue(name, fin, sync, chopsize):
    def onOpen(self):
        self.expected[Case.OK] = []
        _peer_fails(self)
        self.p.sendFrame(opcode=0, fin=fin, payload=b"non-continuation payload", sync=sync, chopsize=chopsize)
        self.p.sendFrame(opcode=1, fin=True, payload=b"Hello, world!", sync=sync, chopsize=chopsize)
        self.p.killAfter(1)

    how = "octet-wise chops" if chopsize else ("per-frame chops" if sync else "one chop")
    return type(name, (Case,), {
        "DESCRIPTION": "Send unfragmented Text Message after Continuation Frame with FIN = %s, where there is nothing to continue, sent in %s." % (
            "true" if fin else "false", how),
        "EXPECTATION": "The connection is failed immediately, since there is no message to continue.",
        "onOpen": onOpen})


class Case5_15(Case):
    DESCRIPTION = "Send text Message fragmented into 2 fragments, then Continuation Frame with FIN = false where there is nothing to continue, then unfragmented Text Message, all sent in one chop."
    EXPECTATION = "The connection is failed immediately, since there is no message to continue."

    def onOpen(self):
        fragments = [b"fragment1", b"fragment2", b"fragment3", b"fragment4"]
        self.expected[Case.OK] = [("message", b"".join(fragments[:2]), False)]
        self.expected[Case.NON_STRICT] = []
        _peer_fails(self)
        self.p.sendFrame(opcode=1, fin=False, payload=fragments[0])
        self.p.sendFrame(opcode=0, fin=True, payload=fragments[1])
        self.p.sendFrame(opcode=0, fin=False, payload=fragments[2])
        self.p.sendFrame(opcode=1, fin=True, payload=fragments[3])
        self.p.killAfter(1)


class Case5_16(Case):
    DESCRIPTION = "Repeated 2x: Continuation Frame with FIN = false (where there is nothing to continue), then text Message fragmented into 2 fragments."
    EXPECTATION = "The connection is failed immediately, since there is no message to continue."
    FIRST_FIN = False

    def onOpen(self):
        self.expected[Case.OK] = []
        _peer_fails(self)
        for _ in range(2):
            self.p.sendFrame(opcode=0, fin=self.FIRST_FIN, payload=b"fragment1")
            self.p.sendFrame(opcode=1, fin=False, payload=b"fragment2")
            self.p.sendFrame(opcode=0, fin=True, payload=b"fragment3")
        self.p.killAfter(1)


class Case5_17(Case5_16):
    DESCRIPTION = "Repeated 2x: Continuation Frame with FIN = true (where there is nothing to continue), then text Message fragmented into 2 fragments."
    FIRST_FIN = True


class Case5_18(Case):
    DESCRIPTION = "Send text Message fragmented into 2 fragments, with both frame opcodes set to text, sent in one chop."
    EXPECTATION = "The connection is failed immediately, since all data frames after the initial data frame must have opcode 0."

    def onOpen(self):
        self.expected[Case.OK] = []
        _peer_fails(self)
        self.p.sendFrame(opcode=1, fin=False, payload=b"fragment1")
        self.p.sendFrame(opcode=1, fin=True, payload=b"fragment2")
        self.p.killAfter(1)


class Case5_19(Case):
    DESCRIPTION = ("A fragmented text message is sent in multiple frames. After sending the first 2 frames "
                   "of the text message, a Ping is sent. Then we wait 1s, then we send 2 more text "
                   "fragments, another Ping and then the final text fragment. Everything is legal.")
    EXPECTATION = ("The peer immediately answers the first Ping before it has received the last text "
                   "message fragment. The peer pong's back the Ping's payload exactly, and echo's the "
                   "payload of the fragmented message back to us.")

    def init(self):
        self.sync = False

    def onOpen(self):
        self.fragments = [b"fragment1", b"fragment2", b"fragment3", b"fragment4", b"fragment5"]
        self.pings = [b"pongme 1!", b"pongme 2!"]
        self.expected[Case.OK] = [("pong", self.pings[0]), ("pong", self.pings[1]),
                                  ("message", b"".join(self.fragments), False)]
        _clean_close(self)
        self.p.sendFrame(opcode=1, fin=False, payload=self.fragments[0], sync=self.sync)
        self.p.sendFrame(opcode=0, fin=False, payload=self.fragments[1], sync=self.sync)
        self.p.sendFrame(opcode=9, fin=True, payload=self.pings[0], sync=self.sync)
        self.p.continueLater(1, self.part2)

    def part2(self):
        self.p.sendFrame(opcode=0, fin=False, payload=self.fragments[2], sync=self.sync)
        self.p.sendFrame(opcode=0, fin=False, payload=self.fragments[3], sync=self.sync)
        self.p.sendFrame(opcode=9, fin=True, payload=self.pings[1], sync=self.sync)
        self.p.sendFrame(opcode=0, fin=True, payload=self.fragments[4], sync=self.sync)
        self.p.closeAfter(1)


class Case5_20(Case5_19):
    DESCRIPTION = "Same as Case 5.19, but send all frames with SYNC = True. Note, this does not change the octets sent in any way, only how the stream is chopped up on the wire."
    EXPECTATION = "Same as Case 5.19. Implementations must be agnostic to how octet stream is chopped up on wire (must be TCP clean)."

    def init(self):
        self.sync = True


register(Case5_1, Case5_2, Case5_3, Case5_4, Case5_5, Case5_6, Case5_7, Case5_8,
         _nothing_to_continue("Case5_9", True, False, None),
         _nothing_to_continue("Case5_10", True, True, None),
         _nothing_to_continue("Case5_11", True, False, 1),
         _nothing_to_continue("Case5_12", False, False, None),
         _nothing_to_continue("Case5_13", False, True, None),
         _nothing_to_continue("Case5_14", False, False, 1),
         Case5_15, Case5_16, Case5_17, Case5_18, Case5_19, Case5_20)


# ---------------------------------------------------------------------------------------
# 6 UTF-8 handling
# ---------------------------------------------------------------------------------------

class Case6_1_1(Case):
    DESCRIPTION = "Send text message of length 0."
    EXPECTATION = "A message is echo'ed back to us (with empty payload)."

    def onOpen(self):
        self.expected[Case.OK] = [("message", b"", False)]
        _clean_close(self)
        self.p.sendFrame(opcode=1, payload=b"")
        self.p.closeAfter(1)


class Case6_1_2(Case):
    DESCRIPTION = "Send fragmented text message, 3 fragments each of length 0."
    EXPECTATION = "A message is echo'ed back to us (with empty payload)."

    def onOpen(self):
        self.expected[Case.OK] = [("message", b"", False)]
        _clean_close(self)
        self.p.sendFrame(opcode=1, fin=False, payload=b"")
        self.p.sendFrame(opcode=0, fin=False, payload=b"")
        self.p.sendFrame(opcode=0, fin=True, payload=b"")
        self.p.closeAfter(1)


class Case6_1_3(Case):
    DESCRIPTION = "Send fragmented text message, 3 fragments, first and last of length 0, middle non-empty."
    EXPECTATION = "A message is echo'ed back to us (with payload = payload of middle fragment)."

    def onOpen(self):
        payload = b"middle frame payload"
        self.expected[Case.OK] = [("message", payload, False)]
        _clean_close(self)
        self.p.sendFrame(opcode=1, fin=False, payload=b"")
        self.p.sendFrame(opcode=0, fin=False, payload=payload)
        self.p.sendFrame(opcode=0, fin=True, payload=b"")
        self.p.closeAfter(1)


class Case6_2_1(Case):
    PAYLOAD = "Hello-µ@ßöäüàá-UTF-8!!".encode("utf-8")
    DESCRIPTION = "Send a valid UTF-8 text message in one fragment."
    EXPECTATION = "The message is echo'ed back to us."

    def onOpen(self):
        self.expected[Case.OK] = [("message", self.PAYLOAD, False)]
        _clean_close(self)
        self.p.sendMessage(self.PAYLOAD, isBinary=False)
        self.p.closeAfter(1)


class Case6_2_2(Case):
    PAYLOAD1 = "Hello-µ@ßöä".encode("utf-8")
    PAYLOAD2 = "üàá-UTF-8!!".encode("utf-8")
    DESCRIPTION = "Send a valid UTF-8 text message in two fragments, fragmented on UTF-8 code point boundary."
    EXPECTATION = "The message is echo'ed back to us."

    def onOpen(self):
        self.expected[Case.OK] = [("message", self.PAYLOAD1 + self.PAYLOAD2, False)]
        _clean_close(self)
        self.p.sendFrame(opcode=1, fin=False, payload=self.PAYLOAD1)
        self.p.sendFrame(opcode=0, fin=True, payload=self.PAYLOAD2)
        self.p.closeAfter(1)


class Case6_2_3(Case):
    PAYLOAD = "Hello-µ@ßöäüàá-UTF-8!!".encode("utf-8")
    DESCRIPTION = "Send a valid UTF-8 text message in fragments of 1 octet, resulting in frames ending on positions which are not code point ends."
    EXPECTATION = "The message is echo'ed back to us."

    def onOpen(self):
        self.expected[Case.OK] = [("message", self.PAYLOAD, False)]
        _clean_close(self)
        self.p.sendMessage(self.PAYLOAD, isBinary=False, fragmentSize=1)
        self.p.closeAfter(1)


class Case6_2_4(Case6_2_3):
    PAYLOAD = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"


class Case6_3_1(Case):
    # invalid exactly on byte 12 (\xa0)
    PAYLOAD1 = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
    PAYLOAD2 = b"\xed\xa0\x80"
    PAYLOAD3 = b"\x65\x64\x69\x74\x65\x64"
    PAYLOAD = PAYLOAD1 + PAYLOAD2 + PAYLOAD3
    DESCRIPTION = "Send invalid UTF-8 text message unfragmented."
    EXPECTATION = "The connection is failed immediately, since the payload is not valid UTF-8."
    FRAGMENT = None

    def onOpen(self):
        self.expected[Case.OK] = []
        _peer_fails(self, INVALID_PAYLOAD, fatal=True)
        self.p.sendMessage(self.PAYLOAD, isBinary=False, fragmentSize=self.FRAGMENT)
        self.p.killAfter(1)


class Case6_3_2(Case6_3_1):
    DESCRIPTION = "Send invalid UTF-8 text message in fragments of 1 octet, resulting in frames ending on positions which are not code point ends."
    FRAGMENT = 1


class Case6_4_1(Case):
    PAYLOAD1 = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
    PAYLOAD2 = b"\xf4\x90\x80\x80"  # invalid exactly on byte 12 (\x90)
    PAYLOAD3 = b"\x65\x64\x69\x74\x65\x64"
    PAYLOAD = PAYLOAD1 + PAYLOAD2 + PAYLOAD3
    DESCRIPTION = ("Send invalid UTF-8 text message in 3 fragments (frames). First frame payload is valid, "
                   "then wait, then 2nd frame which contains the payload making the sequence invalid, "
                   "then wait, then 3rd frame with rest. Note that PART1 and PART3 are valid UTF-8 in "
                   "themselves, PART2 is a 0x110000 encoded as in the UTF-8 integer encoding scheme, but "
                   "the codepoint is invalid (out of range).")
    EXPECTATION = ("The first frame is accepted, we expect to timeout on the first wait. The 2nd frame "
                   "should be rejected immediately (fail fast on UTF-8). If we timeout, we expect the "
                   "connection is failed at least then, since the complete message payload is not valid UTF-8.")

    def parts(self):
        return self.PAYLOAD1, self.PAYLOAD2, self.PAYLOAD3

    def onOpen(self):
        self.expected[Case.OK] = [("timeout", "A")]
        self.expected[Case.NON_STRICT] = [("timeout", "A"), ("timeout", "B")]
        _peer_fails(self, INVALID_PAYLOAD, fatal=True)
        self.send1(self.parts()[0])
        self.p.continueLater(1, self.part2, "A")

    def part2(self):
        if self.p.state == WebSocketProtocol.STATE_OPEN:
            self.received.append(("timeout", "A"))
            self.send2(self.parts()[1])
            self.p.continueLater(1, self.part3, "B")

    def part3(self):
        if self.p.state == WebSocketProtocol.STATE_OPEN:
            self.received.append(("timeout", "B"))
            self.send3(self.parts()[2])
            self.p.killAfter(1)

    # frames (6.4.1/6.4.2)
    def send1(self, data):
        self.p.sendFrame(opcode=1, fin=False, payload=data)

    def send2(self, data):
        self.p.sendFrame(opcode=0, fin=False, payload=data)

    def send3(self, data):
        self.p.sendFrame(opcode=0, fin=True, payload=data)


class Case6_4_2(Case6_4_1):
    DESCRIPTION = "Same as Case 6.4.1, but in 2nd frame, we send only up to and including the octet making the complete payload invalid."

    def parts(self):
        return self.PAYLOAD[:12], self.PAYLOAD[12:13], self.PAYLOAD[13:]


class Case6_4_3(Case6_4_1):
    DESCRIPTION = "Same as Case 6.4.1, but we send message not in 3 frames, but in 3 chops of the same message frame."
    EXPECTATION = ("The first chop is accepted, we expect to timeout on the first wait. The 2nd chop should "
                   "be rejected immediately (fail fast on UTF-8). If we timeout, we expect the connection "
                   "is failed at least then, since the complete message payload is not valid UTF-8.")

    # chops of one frame (6.4.3/6.4.4)
    def send1(self, data):
        self.p.beginMessage()
        self.p.beginMessageFrame(len(self.PAYLOAD))
        self.p.sendMessageFrameData(data)

    def send2(self, data):
        self.p.sendMessageFrameData(data)

    def send3(self, data):
        self.p.sendMessageFrameData(data)
        self.p.endMessage()


class Case6_4_4(Case6_4_3):
    DESCRIPTION = "Same as Case 6.4.2, but we send message not in 3 frames, but in 3 chops of the same message frame."

    def parts(self):
        return self.PAYLOAD[:12], self.PAYLOAD[12:13], self.PAYLOAD[13:]


register(Case6_1_1, Case6_1_2, Case6_1_3, Case6_2_1, Case6_2_2, Case6_2_3, Case6_2_4,
         Case6_3_1, Case6_3_2, Case6_4_1, Case6_4_2, Case6_4_3, Case6_4_4)


def _utf8_valid(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def create_utf8_test_sequences():
    """Test sequences of case6_x_x.py (from Markus Kuhn's UTF-8-test.txt)."""
    seqs = []
    vss = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
    seqs.append(["Some valid UTF-8 sequences", [
        (True, b"hello\x24world"), (True, b"hello\xC2\xA2world"), (True, b"hello\xE2\x82\xACworld"),
        (True, b"hello\xF0\xA4\xAD\xA2world"), (True, vss)]])
    seqs.append(["All prefixes of a valid UTF-8 string that contains multi-byte code points",
                 [(_utf8_valid(vss[:i]), vss[:i]) for i in range(1, len(vss) + 1)]])
    seqs.append(["First possible sequence of a certain length", [
        (True, b"\x00"), (True, b"\xc2\x80"), (True, b"\xe0\xa0\x80"), (True, b"\xf0\x90\x80\x80")]])
    seqs.append(["First possible sequence length 5/6 (invalid codepoints)", [
        (False, b"\xf8\x88\x80\x80\x80"), (False, b"\xfc\x84\x80\x80\x80\x80")]])
    seqs.append(["Last possible sequence of a certain length", [
        (True, b"\x7f"), (True, b"\xdf\xbf"), (True, b"\xef\xbf\xbf"), (True, b"\xf4\x8f\xbf\xbf")]])
    seqs.append(["Last possible sequence length 4/5/6 (invalid codepoints)", [
        (False, b"\xf7\xbf\xbf\xbf"), (False, b"\xfb\xbf\xbf\xbf\xbf"), (False, b"\xfd\xbf\xbf\xbf\xbf\xbf")]])
    seqs.append(["Other boundary conditions", [
        (True, b"\xed\x9f\xbf"), (True, b"\xee\x80\x80"), (True, b"\xef\xbf\xbd"),
        (True, b"\xf4\x8f\xbf\xbf"), (False, b"\xf4\x90\x80\x80")]])
    seqs.append(["Unexpected continuation bytes", [
        (False, b"\x80"), (False, b"\xbf"), (False, b"\x80\xbf"), (False, b"\x80\xbf\x80"),
        (False, b"\x80\xbf\x80\xbf"), (False, b"\x80\xbf\x80\xbf\x80"),
        (False, b"\x80\xbf\x80\xbf\x80\xbf"), (False, bytes(range(0x80, 0xbf)))]])
    lonely = []
    for lo, hi in [(0xc0, 0xdf), (0xe0, 0xef), (0xf0, 0xf7), (0xf8, 0xfb), (0xfc, 0xfd)]:
        lonely.append((False, b"".join(bytes([i, 0x20]) for i in range(lo, hi))))
    seqs.append(["Lonely start characters", lonely])
    k = [b"\xc0", b"\xe0\x80", b"\xf0\x80\x80", b"\xf8\x80\x80\x80", b"\xfc\x80\x80\x80\x80",
         b"\xdf", b"\xef\xbf", b"\xf7\xbf\xbf", b"\xfb\xbf\xbf\xbf", b"\xfd\xbf\xbf\xbf\xbf"]
    seqs.append(["Sequences with last continuation byte missing", [(False, kk) for kk in k]])
    seqs.append(["Concatenation of incomplete sequences", [(False, b"".join(k))]])
    seqs.append(["Impossible bytes", [(False, b"\xfe"), (False, b"\xff"), (False, b"\xfe\xfe\xff\xff")]])
    seqs.append(["Examples of an overlong ASCII character", [
        (False, b"\xc0\xaf"), (False, b"\xe0\x80\xaf"), (False, b"\xf0\x80\x80\xaf"),
        (False, b"\xf8\x80\x80\x80\xaf"), (False, b"\xfc\x80\x80\x80\x80\xaf")]])
    seqs.append(["Maximum overlong sequences", [
        (False, b"\xc1\xbf"), (False, b"\xe0\x9f\xbf"), (False, b"\xf0\x8f\xbf\xbf"),
        (False, b"\xf8\x87\xbf\xbf\xbf"), (False, b"\xfc\x83\xbf\xbf\xbf\xbf")]])
    seqs.append(["Overlong representation of the NUL character", [
        (False, b"\xc0\x80"), (False, b"\xe0\x80\x80"), (False, b"\xf0\x80\x80\x80"),
        (False, b"\xf8\x80\x80\x80\x80"), (False, b"\xfc\x80\x80\x80\x80\x80")]])
    seqs.append(["Single UTF-16 surrogates", [
        (False, b"\xed\xa0\x80"), (False, b"\xed\xad\xbf"), (False, b"\xed\xae\x80"),
        (False, b"\xed\xaf\xbf"), (False, b"\xed\xb0\x80"), (False, b"\xed\xbe\x80"),
        (False, b"\xed\xbf\xbf")]])
    seqs.append(["Paired UTF-16 surrogates", [
        (False, b"\xed\xa0\x80\xed\xb0\x80"), (False, b"\xed\xa0\x80\xed\xbf\xbf"),
        (False, b"\xed\xad\xbf\xed\xb0\x80"), (False, b"\xed\xad\xbf\xed\xbf\xbf"),
        (False, b"\xed\xae\x80\xed\xb0\x80"), (False, b"\xed\xae\x80\xed\xbf\xbf"),
        (False, b"\xed\xaf\xbf\xed\xb0\x80"), (False, b"\xed\xaf\xbf\xed\xbf\xbf")]])
    nonchar = [(True, b"\xef\xbf\xbe"), (True, b"\xef\xbf\xbf")]
    for z1 in [0xf0, 0xf1, 0xf2, 0xf3, 0xf4]:
        for z2 in [0x8f, 0x9f, 0xaf, 0xbf]:
            if not (z1 == 0xf4 and z2 != 0x8f):  # those encode code points > U+10FFFF
                for z3 in [0xbe, 0xbf]:
                    zz = bytes([z1, z2, 0xbf, z3])
                    if zz not in (b"\xf0\x8f\xbf\xbe", b"\xf0\x8f\xbf\xbf"):  # overlong
                        nonchar.append((True, zz))
    seqs.append(["Non-character code points (valid UTF-8)", nonchar])
    seqs.append(["Unicode specials (i.e. replacement char)", [
        (True, b"\xef\xbf\xb9"), (True, b"\xef\xbf\xba"), (True, b"\xef\xbf\xbb"),
        (True, b"\xef\xbf\xbc"), (True, b"\xef\xbf\xbd"), (True, b"\xef\xbf\xbe"),
        (True, b"\xef\xbf\xbf")]])
    return seqs


def _utf8_case_onOpen(self):
    if self.isValid:
        self.expected[Case.OK] = [("message", self.PAYLOAD, False)]
        _clean_close(self)
    else:
        self.expected[Case.OK] = []
        _peer_fails(self, INVALID_PAYLOAD, fatal=True)
    self.p.sendMessage(self.PAYLOAD, False)
    self.p.killAfter(0.5)


SUBCATEGORIES = {}
for _i, (_title, _seqs) in enumerate(create_utf8_test_sequences(), 5):
    SUBCATEGORIES["6.%d" % _i] = _title
    for _j, (_valid, _payload) in enumerate(_seqs, 1):
        register(type("Case6_%d_%d" % (_i, _j), (Case,), {
            "PAYLOAD": _payload,
            "isValid": _valid,
            "DESCRIPTION": "Send a text message with payload which is %svalid UTF-8 in one fragment.<br><br>Payload: 0x%s" % (
                "" if _valid else "not ", _payload.hex()),
            "EXPECTATION": ("The message is echo'ed back to us." if _valid else
                            "The connection is failed immediately, since the payload is not valid UTF-8."),
            "onOpen": _utf8_case_onOpen}))


# ---------------------------------------------------------------------------------------
# 7 Close handling
# ---------------------------------------------------------------------------------------

class _CloseCase(Case):
    """Base of the 7.x cases: a wrong close code makes the case fail."""

    def init(self):
        self.suppressClose = True

    def onConnectionLost(self, failedByMe):
        Case.onConnectionLost(self, failedByMe)
        if self.behaviorClose == Case.WRONG_CODE:
            self.behavior = Case.FAILED
            self.passed = False
            self.result = self.resultClose


class Case7_1_1(_CloseCase):
    DESCRIPTION = "Send a message followed by a close frame"
    EXPECTATION = "Echoed message followed by clean close with normal code."

    def init(self):
        pass  # 7.1.1 does not suppress the automatic close

    def onOpen(self):
        payload = b"Hello World!"
        self.expected[Case.OK] = [("message", payload, False)]
        _clean_close(self)
        self.p.sendFrame(opcode=1, payload=payload)
        self.p.killAfter(1)


class Case7_1_2(_CloseCase):
    DESCRIPTION = "Send two close frames"
    EXPECTATION = "Clean close with normal code. Second close frame ignored."

    def onOpen(self):
        self.expected[Case.OK] = []
        _clean_close(self)
        self.p.sendClose(NORMAL)
        self.p.sendFrame(opcode=8)
        self.p.killAfter(1)


class Case7_1_3(_CloseCase):
    DESCRIPTION = "Send a ping after close message"
    EXPECTATION = "Clean close with normal code, no pong."

    def onOpen(self):
        self.expected[Case.OK] = []
        _clean_close(self)
        self.p.sendClose(NORMAL)
        self.p.sendFrame(opcode=9)
        self.p.killAfter(1)


class Case7_1_4(_CloseCase):
    DESCRIPTION = "Send text message after sending a close frame."
    EXPECTATION = "Clean close with normal code. Text message ignored."

    def onOpen(self):
        self.expected[Case.OK] = []
        _clean_close(self)
        self.p.sendClose(NORMAL)
        self.p.sendFrame(opcode=1, payload=b"Hello World!")
        self.p.killAfter(1)


class Case7_1_5(_CloseCase):
    DESCRIPTION = "Send message fragment1 followed by close then fragment"
    EXPECTATION = "Clean close with normal code."

    def onOpen(self):
        self.expected[Case.OK] = []
        _clean_close(self)
        self.p.sendFrame(opcode=1, fin=False, payload=b"fragment1")
        self.p.sendClose(NORMAL)
        self.p.sendFrame(opcode=0, fin=True, payload=b"fragment2")
        self.p.killAfter(1)


class Case7_1_6(Case):
    DESCRIPTION = "Send 256K message followed by close then a ping"
    EXPECTATION = ("Case outcome depends on implementation defined close behavior. Message and close frame "
                   "are sent back to back. If the close frame is processed before the text message write "
                   "is complete (as can happen in asynchronous processing models) the close frame is "
                   "processed first and the text message may not be received or may only be partially received.")

    def init(self):
        self.suppressClose = True
        self.DATALEN = 256 * 2 ** 10
        self.PAYLOAD = b"BAsd7&jh23"

    def onConnectionLost(self, failedByMe):
        Case.onConnectionLost(self, failedByMe)
        self.passed = True
        if self.behavior == Case.OK:
            self.result = "Text message was processed before close."
        elif self.behavior == Case.NON_STRICT:
            self.result = "Close was processed before text message could be returned."
        self.behavior = Case.INFORMATIONAL
        self.behaviorClose = Case.INFORMATIONAL

    def onOpen(self):
        payload = b"Hello World!"
        self.expected[Case.OK] = [("message", payload, False)]
        self.expected[Case.NON_STRICT] = []
        _clean_close(self)
        self.p.sendFrame(opcode=1, payload=self.PAYLOAD, payload_len=self.DATALEN)
        self.p.sendFrame(opcode=1, payload=payload)
        self.p.sendClose(NORMAL)
        self.p.sendFrame(opcode=9)
        self.p.killAfter(1)


class Case7_3_1(_CloseCase):
    DESCRIPTION = "Send a close frame with payload length 0 (no close code, no close reason)"
    EXPECTATION = "Clean close with normal code."

    def onOpen(self):
        self.expected[Case.OK] = []
        _clean_close(self)
        self.p.sendCloseFrame()
        self.p.killAfter(1)


class Case7_3_2(_CloseCase):
    DESCRIPTION = "Send a close frame with payload length 1"
    EXPECTATION = "Clean close with protocol error or drop TCP."

    def onOpen(self):
        self.expected[Case.OK] = []
        self.expectedClose = {"closedByMe": True, "closeCode": [PROTOCOL_ERROR], "requireClean": False}
        self.p.sendCloseFrame(reasonUtf8=b"a")
        self.p.killAfter(1)


class Case7_3_3(_CloseCase):
    DESCRIPTION = "Send a close frame with payload length 2 (regular close with a code)"
    EXPECTATION = "Clean close with normal code."

    def onOpen(self):
        self.expected[Case.OK] = []
        _clean_close(self)
        self.p.sendClose(NORMAL)
        self.p.killAfter(1)


class Case7_3_4(_CloseCase):
    DESCRIPTION = "Send a close frame with close code and close reason"
    EXPECTATION = "Clean close with normal code."
    REASON = "Hello World!"

    def onOpen(self):
        self.expected[Case.OK] = []
        _clean_close(self)
        self.p.sendClose(NORMAL, self.REASON)
        self.p.killAfter(1)


class Case7_3_5(Case7_3_4):
    DESCRIPTION = "Send a close frame with close code and close reason of maximum length (123)"
    REASON = "*" * 123


class Case7_3_6(_CloseCase):
    DESCRIPTION = "Send a close frame with close code and close reason which is too long (124) - total frame payload 126 octets"
    EXPECTATION = "Clean close with protocol error code or dropped TCP connection."

    def onOpen(self):
        self.expected[Case.OK] = []
        self.expectedClose = {"closedByMe": True, "closeCode": [PROTOCOL_ERROR], "requireClean": False}
        self.p.sendCloseFrame(NORMAL, reasonUtf8=b"*" * 124)
        self.p.killAfter(1)


class Case7_5_1(_CloseCase):
    DESCRIPTION = "Send a close frame with invalid UTF8 payload"
    EXPECTATION = "Clean close with protocol error or invalid utf8 code or dropped TCP."

    def onOpen(self):
        payload = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64"
        self.expected[Case.OK] = []
        self.expectedClose = {"closedByMe": True, "closeCode": [PROTOCOL_ERROR, INVALID_PAYLOAD],
                              "requireClean": False}
        self.p.sendCloseFrame(NORMAL, reasonUtf8=payload)
        self.p.killAfter(1)


register(Case7_1_1, Case7_1_2, Case7_1_3, Case7_1_4, Case7_1_5, Case7_1_6,
         Case7_3_1, Case7_3_2, Case7_3_3, Case7_3_4, Case7_3_5, Case7_3_6, Case7_5_1)


def _valid_code_onOpen(self):
    self.expected[Case.OK] = []
    self.expectedClose = {"closedByMe": True, "closeCode": [NORMAL, self.CLOSE_CODE], "requireClean": True}
    self.p.sendCloseFrame(self.CLOSE_CODE)
    self.p.killAfter(1)


def _invalid_code_onOpen(self):
    self.expected[Case.OK] = []
    self.expectedClose = {"closedByMe": True, "closeCode": [PROTOCOL_ERROR], "requireClean": False}
    self.p.sendCloseFrame(self.CLOSE_CODE)
    self.p.killAfter(1)


for _i, _code in enumerate([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999], 1):
    register(type("Case7_7_%d" % _i, (_CloseCase,), {
        "CLOSE_CODE": _code,
        "DESCRIPTION": "Send close with valid close code %d" % _code,
        "EXPECTATION": "Clean close with normal or echoed code",
        "init": Case.init,  # the 7.7.x cases do not suppress the automatic close
        "onOpen": _valid_code_onOpen}))

for _i, _code in enumerate([0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999], 1):
    register(type("Case7_9_%d" % _i, (_CloseCase,), {
        "CLOSE_CODE": _code,
        "DESCRIPTION": "Send close with invalid close code %d" % _code,
        "EXPECTATION": "Clean close with protocol error code or drop TCP",
        "init": Case.init,
        "onOpen": _invalid_code_onOpen}))


class Case7_13_1(Case):
    DESCRIPTION = "Send close with close code 5000"
    EXPECTATION = "Actual events are undefined by the spec."
    CODE = 5000

    def init(self):
        self.code = self.CODE
        self.suppressClose = True

    def onConnectionLost(self, failedByMe):
        Case.onConnectionLost(self, failedByMe)
        self.passed = True
        self.behavior = Case.INFORMATIONAL
        self.behaviorClose = Case.INFORMATIONAL
        self.result = "Actual events are undefined by the spec."

    def onOpen(self):
        self.expected[Case.OK] = []
        self.expectedClose = {"closedByMe": True, "closeCode": [NORMAL, self.code, PROTOCOL_ERROR],
                              "requireClean": False}
        self.p.sendCloseFrame(self.code)
        self.p.killAfter(1)


class Case7_13_2(Case7_13_1):
    DESCRIPTION = "Send close with close code 65535"
    CODE = 65535


register(Case7_13_1, Case7_13_2)


# ---------------------------------------------------------------------------------------
# 9 Limits/performance (scaled, see G9)
# ---------------------------------------------------------------------------------------

class _G9Case(Case):
    """Common part of 9.1-9.6: send one big message, expect it echoed with the same length."""
    BINARY = False
    WAITSECS = 100

    def init(self):
        self.reportTime = True

    def expect_message(self):
        self.over_limit = G9["limit"] is not None and self.DATALEN > G9["limit"]
        if self.over_limit:
            # judged by Case.onConnectionLost: nothing echoed, the peer closes with 1009
            self.expected[Case.OK] = []
            _peer_fails(self, P.CLOSE_STATUS_CODE_MESSAGE_TOO_BIG)
            return
        self.behavior = Case.FAILED
        _clean_close(self)
        self.result = "Did not receive message within %d seconds." % self.WAITSECS

    def wait(self):
        # over the limit, the peer should fail the connection at once: do not wait long
        return min(self.WAITSECS, 10) if self.over_limit else self.WAITSECS

    def onMessage(self, msg, binary):
        kind = "binary" if self.BINARY else "text"
        if self.over_limit:
            self.received.append(("message", msg, binary))
            self.result = "The %d-octet message is above the limit of %d but was echoed (%d octets)." % (
                self.DATALEN, G9["limit"], len(msg))
            self.p.sendClose(NORMAL)
            return
        if binary != self.BINARY:
            self.result = "Expected %s message with payload, but got %s." % (
                kind, "binary" if binary else "text")
        elif len(msg) != self.DATALEN:
            self.result = "Expected %s message with payload of length %d, but got %d." % (
                kind, self.DATALEN, len(msg))
        elif msg != self.expected_payload():
            self.result = "Received %s message of length %d, but its content differs from what was sent." % (
                kind, len(msg))
        else:
            self.behavior = Case.OK
            self.result = "Received %s message of length %d." % (kind, len(msg))
        self.p.sendClose(NORMAL)


class _G9Repeat(_G9Case):
    """9.1, 9.2 (unchopped) and 9.5, 9.6 (chopped): one frame with a repeated pattern."""
    CHOPSIZE = None

    def expected_payload(self):
        pat = self.PATTERN
        n = self.DATALEN
        return pat * (n // len(pat)) + pat[:n % len(pat)]

    def onOpen(self):
        self.DATALEN = g9_size(self.FULL_LEN)
        self.expect_message()
        self.p.sendFrame(opcode=2 if self.BINARY else 1, payload=self.PATTERN,
                         payload_len=self.DATALEN, chopsize=self.CHOPSIZE)
        self.p.closeAfter(self.wait())


class _G9Fragmented(_G9Case):
    """9.3, 9.4: one message sent in fragments of FRAGSIZE."""

    def expected_payload(self):
        return self.PAYLOAD

    def onOpen(self):
        self.DATALEN = g9_size(self.FULL_LEN)
        self.PAYLOAD = (b"\xfe" if self.BINARY else b"*") * self.DATALEN
        self.expect_message()
        self.p.sendMessage(payload=self.PAYLOAD, isBinary=self.BINARY, fragmentSize=self.FRAGSIZE)
        self.p.closeAfter(self.wait())


def _size(n):
    for unit, div in (("M", 2 ** 20), ("k", 2 ** 10)):
        if n >= div and n % div == 0:
            return "%d%s" % (n // div, unit)
    return str(n)


KiB, MiB = 2 ** 10, 2 ** 20
for _i, (_len, _wait_t, _wait_b) in enumerate([(64 * KiB, 10, 10), (256 * KiB, 10, 10), (1 * MiB, 100, 10),
                                               (4 * MiB, 100, 10), (8 * MiB, 100, 100),
                                               (16 * MiB, 100, 100)], 1):
    register(type("Case9_1_%d" % _i, (_G9Repeat,), {
        "FULL_LEN": _len, "PATTERN": b"BAsd7&jh23", "WAITSECS": _wait_t, "BINARY": False,
        "DESCRIPTION": "Send text message message with payload of length %s (scaled by 1/size_div)." % _size(_len),
        "EXPECTATION": "Receive echo'ed text message (with payload as sent)."}))
for _i, (_len, _wait_t, _wait_b) in enumerate([(64 * KiB, 10, 10), (256 * KiB, 10, 10), (1 * MiB, 100, 10),
                                               (4 * MiB, 100, 10), (8 * MiB, 100, 100),
                                               (16 * MiB, 100, 100)], 1):
    register(type("Case9_2_%d" % _i, (_G9Repeat,), {
        "FULL_LEN": _len, "PATTERN": b"\x00\xfe\x23\xfa\xf0", "WAITSECS": _wait_b, "BINARY": True,
        "DESCRIPTION": "Send binary message message with payload of length %s (scaled by 1/size_div)." % _size(_len),
        "EXPECTATION": "Receive echo'ed binary message (with payload as sent)."}))
for _group, _binary in ((3, False), (4, True)):
    for _i, _frag in enumerate([64, 256, 1 * KiB, 4 * KiB, 16 * KiB, 64 * KiB, 256 * KiB, 1 * MiB, 4 * MiB], 1):
        register(type("Case9_%d_%d" % (_group, _i), (_G9Fragmented,), {
            "FULL_LEN": 4 * MiB, "FRAGSIZE": _frag, "WAITSECS": 100, "BINARY": _binary,
            "DESCRIPTION": "Send fragmented %s message message with message payload of length 4M (scaled by 1/size_div). Sent out in fragments of %s." % (
                "binary" if _binary else "text", _size(_frag)),
            "EXPECTATION": "Receive echo'ed %s message (with payload as sent)." % ("binary" if _binary else "text")}))
for _group, _binary, _pat in ((5, False, b"BAsd7&jh23"), (6, True, b"\x00\xfe\x23\xfa\xf0")):
    for _i, _chop in enumerate([64, 128, 256, 512, 1024, 2048], 1):
        register(type("Case9_%d_%d" % (_group, _i), (_G9Repeat,), {
            "FULL_LEN": 1 * MiB, "PATTERN": _pat, "CHOPSIZE": _chop, "WAITSECS": 1000, "BINARY": _binary,
            "DESCRIPTION": "Send %s message message with payload of length 1M (scaled by 1/size_div). Sent out data in chops of %d octets." % (
                "binary" if _binary else "text", _chop),
            "EXPECTATION": "Receive echo'ed %s message (with payload as sent)." % ("binary" if _binary else "text")}))


class _G9RoundTrip(Case):
    """9.7 (text), 9.8 (binary): COUNT messages of LEN octets, each sent after the previous echo."""

    def init(self):
        self.reportTime = True

    def onOpen(self):
        self.COUNT = g9_count(self.FULL_COUNT)
        self.behavior = Case.FAILED
        _clean_close(self)
        self.result = "Case did not finish within %d seconds." % self.WAITSECS
        self.p.closeAfter(self.WAITSECS)
        self.count = 0
        self.sendOne()

    def sendOne(self):
        if self.BINARY:
            self.p.sendFrame(opcode=2, payload=b"\xfe", payload_len=self.LEN)
        else:
            self.p.sendFrame(opcode=1, payload=b"*", payload_len=self.LEN)
        self.count += 1

    def onMessage(self, msg, binary):
        if binary != self.BINARY or len(msg) != self.LEN:
            self.behavior = Case.FAILED
            self.result = "Echo'ed message type or length differs from what I sent (got binary = %s, payload length = %s)." % (
                binary, len(msg))
            self.p.sendClose(NORMAL)
        elif self.count < self.COUNT:
            self.sendOne()
        else:
            self.behavior = Case.OK
            self.result = "Ok, received all echo'ed messages in time."
            self.p.sendClose(NORMAL)


for _group, _binary in ((7, False), (8, True)):
    for _i, (_len, _count, _wait) in enumerate([(0, 1000, 60), (16, 1000, 60), (64, 1000, 60),
                                                (256, 1000, 120), (1024, 1000, 240), (4096, 1000, 480)], 1):
        _mt = "binary" if _binary else "text"
        register(type("Case9_%d_%d" % (_group, _i), (_G9RoundTrip,), {
            "LEN": _len, "FULL_COUNT": _count, "WAITSECS": _wait, "BINARY": _binary,
            "DESCRIPTION": "Send %d %s messages (scaled by 1/count_div) of payload size %d to measure implementation/network RTT (round trip time) / latency." % (
                _count, _mt, _len),
            "EXPECTATION": "Receive echo'ed %s messages (with payload as sent). Timeout case after %d secs." % (_mt, _wait)}))


# ---------------------------------------------------------------------------------------
# 10 Misc: auto-fragmentation
# ---------------------------------------------------------------------------------------

class Case10_1_1(Case):
    DESCRIPTION = "Send text message with payload of length 65536 auto-fragmented with <b>autoFragmentSize = 1300</b>."
    EXPECTATION = "Receive echo'ed text message (with payload as sent and transmitted frame counts as expected). Clean close with normal code."

    def onOpen(self):
        self.payload = b"*" * 65536
        self.p.autoFragmentSize = 1300
        self.expected[Case.OK] = [("message", self.payload, False)]
        _clean_close(self)
        self.p.sendMessage(self.payload)
        self.p.killAfter(10)

    def onConnectionLost(self, failedByMe):
        Case.onConnectionLost(self, failedByMe)
        if self.p.connectionWasOpen:
            frames_expected = {0: len(self.payload) // self.p.autoFragmentSize,
                               1: 1 if len(self.payload) % self.p.autoFragmentSize > 0 else 0}
            frames_got = {0: self.p.txFrameStats.get(0, 0), 1: self.p.txFrameStats.get(1, 0)}
            if frames_expected != frames_got:
                self.behavior = Case.FAILED
                self.result = "Frames transmitted %s does not match what we expected %s." % (
                    frames_got, frames_expected)
        else:
            self.behavior = Case.FAILED
            self.result = "WebSocket connection was never open"


register(Case10_1_1)


def _sort_key(cls):
    return tuple(int(x) for x in case_id(cls).split("."))


# Autobahn's order: by case number (its Cases list is in this order too).
CASES.sort(key=_sort_key)

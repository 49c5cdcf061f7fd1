#!/usr/bin/env python3
"""Write the hand-made seed inputs of tests/fuzz/corpus/<target>/ (deterministic).

Usage: tests/fuzz/make_seeds.py [CORPUS_DIR]   (default: tests/fuzz/corpus next to this file)

Files written here are named seed-*; inputs the fuzzer found and that were added with
scripts/fuzz --merge have libFuzzer's SHA-1 names and are not touched by this script.
"""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")
seeds = {}


def seed(target, name, data):
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    key = (target, "seed-" + name)
    assert key not in seeds, key
    seeds[key] = data


# ---------------------------------------------------------------- http
UPGRADE = ("GET /ws?token=abc%2Bdef&x=1 HTTP/1.1\r\n"
           "Host: localhost:3000\r\n"
           "Upgrade: websocket\r\n"
           "Connection: keep-alive, Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: 13\r\n"
           "Origin: http://localhost:3000\r\n"
           "Cookie: a=1; token=\"eyJ%2Bx\"; sid=abc\r\n"
           "\r\n")
seed("http", "ws-upgrade", UPGRADE)
seed("http", "ws-upgrade-lf", UPGRADE.replace("\r\n", "\n"))
seed("http", "ws-upgrade-version-8", UPGRADE.replace("Version: 13", "Version: 8"))
seed("http", "ws-upgrade-bad-key", UPGRADE.replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ=!"))
seed("http", "ws-upgrade-cross-origin", UPGRADE.replace("http://localhost:3000", "https://evil.example"))
seed("http", "ws-upgrade-ipv6-origin", UPGRADE.replace("http://localhost:3000", "http://[::1]:3000"))
seed("http", "ws-upgrade-post", UPGRADE.replace("GET", "POST", 1))
seed("http", "sio-polling-get",
     "GET /socket.io/?EIO=4&transport=polling&t=N8hyd6w HTTP/1.1\r\n"
     "Host: chat.example.com\r\nAccept: */*\r\nConnection: close\r\n\r\n")
seed("http", "sio-polling-post-length",
     "POST /socket.io/?EIO=4&transport=polling&sid=lv_VI97HAXpY6yYWAAAC HTTP/1.1\r\n"
     "Host: localhost\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: 30\r\n\r\n"
     "40\x1e42[\"join_room\",{\"roomId\":1}]")
seed("http", "sio-polling-post-chunked",
     "POST /socket.io/?EIO=4&transport=polling&sid=abc HTTP/1.1\r\n"
     "Host: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
     "2\r\n40\r\n1e\r\n\x1e42[\"typing\",{\"roomId\":\"r\"}]\r\n0\r\n\r\n")
seed("http", "chunked-body-wikipedia",
     "4\r\nWiki\r\n5;ext=\"a b\"\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\n\r\n")
seed("http", "chunked-body-lf", "3\nabc\n00 \n\n")
seed("http", "chunked-body-bad-size", "g\r\nabc\r\n0\r\n\r\n")
seed("http", "chunked-body-missing-crlf", "3\r\nabcd0\r\n\r\n")
seed("http", "chunked-body-16-digits", "0000000000000003\r\nabc\r\n0\r\n\r\n")
seed("http", "chunked-body-unfinished", "5\r\nab")
seed("http", "chunked-after-head-te-and-length",
     "POST /api/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n")
seed("http", "te-gzip", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
seed("http", "content-length-duplicates",
     "POST /dev/token HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\nContent-Length: 4\r\n\r\nabc")
seed("http", "api-history",
     "GET /api/rooms/general/messages?before=120&limit=50 HTTP/1.1\r\n"
     "Host: localhost:3000\r\nAuthorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.x\r\n\r\n")
seed("http", "query-encodings",
     "GET /p?EIO=4&transport=websocket&sid=%41%2b%2B+x&token=%zz&before=%4&limit HTTP/1.1\r\n\r\n")
seed("http", "http10-keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
seed("http", "leading-crlf", "\r\n\r\nGET /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
seed("http", "obs-fold", "GET / HTTP/1.1\r\nX-A: 1\r\n  continued\r\n\r\n")
seed("http", "bad-version", "GET / HTTP/2.0\r\n\r\n")
seed("http", "bad-method", "G(T / HTTP/1.1\r\n\r\n")
seed("http", "ctl-in-value", "GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n")
seed("http", "tab-and-blanks", "GET / HTTP/1.1\r\nX-Tab:\t a\tb \t\r\nEmpty:\r\n\r\n")
seed("http", "space-in-target", "GET /a b HTTP/1.1\r\n\r\n")
seed("http", "incomplete-head", "GET / HTTP/1.1\r\nHost: a\r\n\r")
seed("http", "many-headers",
     "GET / HTTP/1.1\r\n" + "".join("H%d: %d\r\n" % (i, i) for i in range(70)) + "\r\n")
seed("http", "origin-null", "GET /ws HTTP/1.1\r\nHost: h:1\r\nOrigin: null\r\n\r\n")

# ---------------------------------------------------------------- ws
# Config bytes: [role | limits | stop-after][piece][piece][piece]; see fuzz_ws.c.
MASK = bytes([0x37, 0xFA, 0x21, 0x3D])


def frame(op, payload=b"", fin=True, mask=MASK, rsv=0, length=None, form=None):
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogatepass")
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | op
    m = 0x80 if mask else 0
    if form == 127 or (form is None and n > 0xFFFF):
        h = bytes([b0, m | 127]) + struct.pack(">Q", n)
    elif form == 126 or (form is None and n >= 126):
        h = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        h = bytes([b0, m | n])
    if mask:
        h += mask
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return h + payload


def cfg(role=0, frame_limit=0, msg_limit=0, stop=0, pieces=(1, 3, 7)):
    return bytes([role | frame_limit << 1 | msg_limit << 3 | stop << 5]) + bytes(pieces)


def close(code, reason=b""):
    return struct.pack(">H", code) + reason


seed("ws", "rfc-hello-masked", cfg() + bytes.fromhex("8185 37fa213d 7f9f4d5158"))
seed("ws", "rfc-hello-unmasked-client", cfg(role=1) + bytes.fromhex("810548656c6c6f"))
seed("ws", "rfc-fragmented-with-ping",
     cfg(pieces=(2, 5, 0)) + frame(1, "Hel", fin=False) + frame(9, "ping") + frame(0, "lo"))
seed("ws", "text-json-then-close",
     cfg(pieces=(4, 9, 2)) + frame(1, '{"event":"join_room","data":{"roomId":"general"},"id":1}')
     + frame(8, close(1000, b"bye")))
seed("ws", "binary-126", cfg(pieces=(100, 1, 60)) + frame(2, bytes(range(256))))
seed("ws", "binary-127-form-small", cfg() + frame(2, b"abcde", form=127))
seed("ws", "close-empty-then-pong", cfg() + frame(10, b"") + frame(8, b""))
seed("ws", "close-1005", cfg() + frame(8, close(1005)))
seed("ws", "close-one-byte", cfg() + frame(8, b"\x03"))
seed("ws", "close-bad-utf8-reason", cfg() + frame(8, close(1000, b"\xc3\x28")))
seed("ws", "close-4999-utf8", cfg() + frame(8, close(4999, "désolé".encode())))
seed("ws", "server-frame-unmasked", cfg() + frame(1, "hi", mask=None))
seed("ws", "client-frame-masked", cfg(role=1) + frame(1, "hi"))
seed("ws", "rsv-bits", cfg() + frame(1, "x", rsv=4))
seed("ws", "reserved-opcode", cfg() + frame(3, "x"))
seed("ws", "fragmented-ping", cfg() + frame(9, "x", fin=False))
seed("ws", "control-126", cfg() + frame(9, bytes(126)))
seed("ws", "continuation-first", cfg() + frame(0, "x"))
seed("ws", "text-inside-fragmented", cfg() + frame(1, "a", fin=False) + frame(1, "b"))
seed("ws", "invalid-utf8-text", cfg() + frame(1, b"ok\xed\xa0\x80"))
seed("ws", "utf8-split-across-fragments",
     cfg(pieces=(1, 1, 2)) + frame(1, b"\xf0\x9f", fin=False) + frame(0, b"\x98", fin=False)
     + frame(0, b"\x80!"))
seed("ws", "utf8-truncated-at-end", cfg() + frame(1, b"\xe2\x82"))
seed("ws", "frame-over-limit-16", cfg(frame_limit=1) + frame(2, bytes(17)))
seed("ws", "message-over-limit-16",
     cfg(msg_limit=1) + frame(2, bytes(10), fin=False) + frame(0, bytes(10)))
seed("ws", "length-top-bit", cfg() + bytes([0x82, 0xFF]) + b"\x80" + bytes(7) + MASK)
seed("ws", "huge-length-limits-max", cfg(frame_limit=3, msg_limit=3) + bytes([0x82, 0xFF])
     + b"\x7f" + b"\xff" * 7 + MASK + b"abc")
seed("ws", "stop-after-two",
     cfg(stop=2) + frame(1, "a") + frame(9, "b") + frame(1, "c") + frame(8, close(1001)))
seed("ws", "empty-fragments",
     cfg(pieces=(0, 1, 0)) + frame(2, b"", fin=False) + frame(0, b"", fin=False) + frame(0, b"z"))
seed("ws", "partial-header", cfg() + frame(1, "hello")[:4])
seed("ws", "client-role-close", cfg(role=1, pieces=(2, 2, 2)) + frame(8, close(1000, b"done"), mask=None))

# ---------------------------------------------------------------- utf8
U = "utf8"
seed(U, "ascii", "hello, world: the quick brown fox jumps over the lazy dog")
seed(U, "empty", b"")
seed(U, "two-byte", "é ü ß ñ \u0080\u07ff")
seed(U, "three-byte", "€ 中文 \u0800\uffff\ufffd\ufeff")
seed(U, "four-byte", "😀 𝄞 \U00010000\U0010ffff")
seed(U, "mixed-long", ("ascii-run-of-more-than-8 bytes é€😀 " * 6))
seed(U, "overlong-2", b"\xc0\x80 \xc1\xbf")
seed(U, "overlong-3", b"abc\xe0\x80\x80")
seed(U, "overlong-4", b"\xf0\x80\x80\x80")
seed(U, "surrogate-high", b"\xed\xa0\x80")
seed(U, "surrogate-low", b"\xed\xbf\xbf")
seed(U, "above-max", b"\xf4\x90\x80\x80")
seed(U, "f5-ff", b"\xf5\x80\x80\x80\xff\xfe")
seed(U, "lone-continuation", b"a\x80b")
seed(U, "truncated-2", b"abcdefgh\xc3")
seed(U, "truncated-3", b"\xe2\x82")
seed(U, "truncated-4", b"\xf0\x9f\x98")
seed(U, "max-boundaries", b"\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbd\xf4\x8f\xbf\xbf")
seed(U, "nul-and-del", b"a\x00b\x7fc")
seed(U, "kuhn-mixed", "κόσμε".encode() + b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce")

# ---------------------------------------------------------------- envelope
E = "envelope"


def env(event, data=None, id_=None, raw_id=None):
    o = {"event": event}
    if data is not None:
        o["data"] = data
    if id_ is not None:
        o["id"] = id_
    s = json.dumps(o, ensure_ascii=False, separators=(",", ":"))
    if raw_id is not None:
        s = s[:-1] + ',"id":' + raw_id + "}"
    return s


seed(E, "join-room", env("join_room", {"roomId": "general"}, 1))
seed(E, "join-room-since", env("join_room", {"roomId": "room:a.b-c_1", "since": 42}, "req-7"))
seed(E, "join-room-bad-since", env("join_room", {"roomId": "general", "since": -1.5}, 2))
seed(E, "leave-room", env("leave_room", {"roomId": "general"}, 3))
seed(E, "leave-room-bad-id", env("leave_room", {"roomId": "has space"}, 4))
seed(E, "send-message", env("send_message", {"roomId": "general", "text": "hello 😀",
                                             "clientMsgId": "c-1"}, 5))
seed(E, "send-message-blank", env("send_message", {"roomId": "general", "text": " \t\n"}, 6))
seed(E, "send-message-numeric-cmid", env("send_message", {"roomId": "g", "text": "x",
                                                          "clientMsgId": 12345}, 7))
seed(E, "send-message-escapes",
     '{"event":"send_message","data":{"roomId":"g","text":"a\\u0000b\\ud83d\\ude00\\n\\"","clientMsgId":null},"id":8}')
seed(E, "typing", env("typing", {"roomId": "general", "isTyping": True}))
seed(E, "typing-not-bool", env("typing", {"roomId": "general", "isTyping": 1}))
seed(E, "direct-message", env("direct_message", {"recipientId": 42, "text": "hi"}, 9))
seed(E, "direct-message-string-id", env("direct_message", {"recipientId": "alice", "text": "hi"}, 10))
seed(E, "direct-message-bad-recipient", env("direct_message", {"recipientId": -3, "text": "hi"}))
seed(E, "history", env("history", {"roomId": "general", "before": 100, "limit": 20}, 11))
seed(E, "history-limit-0", env("history", {"roomId": "general", "limit": 0}, 12))
seed(E, "history-before-null", env("history", {"roomId": "general", "before": None}, 13))
seed(E, "dm-history", env("dm_history", {"userId": 7, "limit": 100}, 14))
seed(E, "dm-history-2-53", env("dm_history", {"userId": 9007199254740991}, 15))
seed(E, "get-online-users", env("get_online_users", None, 16))
seed(E, "new-message", env("newMessage", "hello everyone", 17))
seed(E, "unknown-event", env("no_such_event", {}, "x"))
seed(E, "id-float", env("join_room", {"roomId": "a"}, raw_id="1.5"))
seed(E, "id-big", env("join_room", {"roomId": "a"}, raw_id="1e300"))
seed(E, "id-null", env("join_room", {"roomId": "a"}, raw_id="null"))
seed(E, "id-long-string", env("join_room", {"roomId": "a"}, "x" * 40))
seed(E, "id-control-string", env("join_room", {"roomId": "a"}, "\x01\x02\x03\x04\x05\x06\x07\x08"))
seed(E, "event-missing", '{"data":{"roomId":"general"},"id":1}')
seed(E, "event-empty", '{"event":"","id":1}')
seed(E, "event-too-long", env("e" * 65))
seed(E, "not-object", '["join_room",{"roomId":"general"}]')
seed(E, "invalid-json", '{"event":"join_room","data":{"roomId":"gen')
seed(E, "duplicate-keys", '{"event":"a","event":"typing","data":{"roomId":"x","roomId":5,"isTyping":false}}')
seed(E, "data-only", '{"roomId":"general","text":"plain data object","userId":"9007199254740993","limit":5}')
seed(E, "deep-nesting", '{"event":"x","data":' + "[" * 200 + "]" * 200 + "}")

# ---------------------------------------------------------------- eio
# From the Engine.IO v4 and Socket.IO v5 protocol documents, and this server's own packets.
I = "eio"
seed(I, "eio-open", '0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],'
                    '"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}')
seed(I, "eio-close", "1")
seed(I, "eio-ping", "2")
seed(I, "eio-pong-probe", "3probe")
seed(I, "eio-ping-probe", "2probe")
seed(I, "eio-upgrade", "5")
seed(I, "eio-noop", "6")
seed(I, "eio-message", "4hello")
seed(I, "eio-binary", "bAQIDBA==")
seed(I, "eio-unknown-type", "7x")
seed(I, "polling-payload", "4hello\x1e2\x1e4€uro\x1ebAQIDBA==")
seed(I, "polling-trailing-sep", "40\x1e42[\"typing\",{\"roomId\":\"r\",\"isTyping\":true}]\x1e")
seed(I, "polling-empty-records", "\x1e\x1e3\x1e")
seed(I, "sio-connect", "40")
seed(I, "sio-connect-auth", '40{"token":"eyJhbGciOiJIUzI1NiJ9.e30.x"}')
seed(I, "sio-connect-nsp", '40/admin,{"token":"123"}')
seed(I, "sio-connect-ok", '40/chat,{"sid":"wZX3oN0bSVIhsaknAAAI"}')
seed(I, "sio-connect-bad-data", '40"str"')
seed(I, "sio-disconnect", "41/admin,")
seed(I, "sio-disconnect-data", "41{}")
seed(I, "sio-event", '42["hello",1]')
seed(I, "sio-event-ack", '4212["join_room",{"roomId":"general"}]')
seed(I, "sio-event-nsp-ack", '42/admin,456["project:delete",123]')
seed(I, "sio-event-send", '42["send_message",{"roomId":"general","text":"hi 😀","clientMsgId":"c1"}]')
seed(I, "sio-event-not-array", '42{"a":1}')
seed(I, "sio-ack", "43/admin,456[]")
seed(I, "sio-ack-data", '437[{"joined":"general","messages":[]}]')
seed(I, "sio-connect-error", '44{"message":"Not authorized"}')
seed(I, "sio-connect-error-empty", "44")
seed(I, "sio-binary-event", '451-["hello",{"_placeholder":true,"num":0}]')
seed(I, "sio-binary-ack", '461-/admin,456[{"_placeholder":true,"num":0}]')
seed(I, "sio-binary-no-count", '45-["x"]')
seed(I, "sio-long-nsp", "40/" + "n" * 70 + ",{}")
seed(I, "sio-long-ack-id", '421234567890123456["x"]')
seed(I, "sio-nsp-no-comma", "40/chat")

# ---------------------------------------------------------------- brkproto
B = "brkproto"


def bframe(t, *fields):
    body = bytes([t]) + b"".join(struct.pack(">I", len(f)) + f for f in fields)
    return struct.pack(">I", len(body)) + body


HELLO = bframe(1, b"0", b"12345")
seed(B, "hello", HELLO)
seed(B, "sub-unsub", bframe(2, b"room:general") + bframe(3, b"user:42"))
seed(B, "pub", bframe(4, b"room:general", b'{"event":"new_message","data":{"id":1,"text":"hi"}}'))
seed(B, "msg", bframe(5, b"all", b'{"event":"user_online","data":{"userId":42},"origin":"h1"}'))
seed(B, "conn-up-down", bframe(6, b"42", b"alice") + bframe(7, b"42", b"general random"))
seed(B, "online", bframe(8, b"7") + bframe(9, b"7", b'[{"userId":42,"username":"alice"}]'))
seed(B, "online-error", bframe(9, b"8", b""))
seed(B, "status", bframe(10, b"up") + bframe(10, b"down"))
seed(B, "stream-truncated", HELLO + bframe(2, b"room:x")[:-3])
seed(B, "unknown-type", struct.pack(">I", 5) + b"\x0b" + b"\x00\x00\x00\x00")
seed(B, "type-zero", struct.pack(">I", 1) + b"\x00")
seed(B, "wrong-arity", struct.pack(">I", 1 + 4 + 1) + b"\x02\x00\x00\x00\x01a" + bframe(1, b"a"))
seed(B, "too-many-fields", struct.pack(">I", 1 + 8) + b"\x02" + b"\x00" * 8)
seed(B, "field-overruns", struct.pack(">I", 1 + 4 + 2) + b"\x02\x00\x00\x00\x05ab")
seed(B, "length-zero", struct.pack(">I", 0) + b"\x02")
seed(B, "length-over-16mib", struct.pack(">I", (16 << 20) + 1) + b"\x04")
seed(B, "length-16mib-partial", struct.pack(">I", 16 << 20) + b"\x04\x00\x00")
seed(B, "empty-fields", bframe(4, b"", b"") + bframe(8, b""))

for (target, name), data in sorted(seeds.items()):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
print("wrote %d seed files under %s" % (len(seeds), OUT))

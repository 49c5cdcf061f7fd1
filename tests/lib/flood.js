'use strict';
// A child process for attacks.test.js "read floods": it floods a gateway with unsolicited
// pongs over raw WebSocket connections, so that the test's own event loop, which measures
// how fast a normal client is served, is not the one busy writing the flood.
// Usage: node flood.js PORT PATH... ; prints {"sent":bytes,"live":connections} every 100 ms.
const { RawSocket, encodeFrame } = require('./clients');

(async () => {
  const [port, ...paths] = process.argv.slice(2);
  const pong = encodeFrame(10, Buffer.alloc(125, 0x70));
  const chunk = Buffer.concat(Array.from({ length: 4096 }, () => pong)); // 508 KiB
  const socks = await Promise.all(paths.map((p) => RawSocket.connect(Number(port), p)));
  let sent = 0;
  const report = () => process.stdout.write(`${JSON.stringify({ sent, live: socks.filter((rs) => !rs.ended).length })}\n`);
  setInterval(report, 100);
  report();
  for (const rs of socks) {
    (async () => {
      while (!rs.ended) {
        sent += chunk.length;
        if (rs.s.write(chunk)) continue;
        await new Promise((r) => {
          const done = () => { rs.s.off('drain', done); rs.s.off('close', done); r(); };
          rs.s.on('drain', done);
          rs.s.on('close', done);
        });
      }
    })();
  }
})().catch((e) => { process.stderr.write(`${e.stack}\n`); process.exit(1); });

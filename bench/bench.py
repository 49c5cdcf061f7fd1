#!/usr/bin/env python3
"""
The benchmark driver behind scripts/bench (issue 7, docs/BENCHMARKS.md).

One run measures the product (two chat-gateway instances with their chat-broker) and the
peer (bench/peer: two Node Socket.IO processes with the Redis adapter) on the same
PostgreSQL and Redis, with the same load generator (bench/load/loadgen), the same
scenarios and the same CPU pinning: the servers under test on SERVER_CPUS, the load
generator, Redis and PostgreSQL on LOAD_CPUS. Each scenario runs against both, in turn,
repeated; the medians are reported.

Only the Python standard library; processes are real and on loopback only.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, 'build')
RUN = os.path.join(ROOT, '.run', 'bench')
PG_BIN = '/usr/lib/postgresql/15/bin'
PG_PORT = 5544
REDIS_PORT = 6544
DB_URL = f'postgresql://postgres@127.0.0.1:{PG_PORT}/chat_bench'
SECRET = 'bench-secret-0123456789abcdef0123456789abcdef'
PRODUCT_PORTS = (4101, 4102)
PEER_PORTS = (4201, 4202)


def log(msg):
    print(f'\033[1m==> {msg}\033[0m', file=sys.stderr, flush=True)


class Procs:
    """Every process this run started, stopped on exit (also on Ctrl-C)."""

    def __init__(self):
        self.items = []

    def start(self, name, argv, env=None, cpus=None):
        os.makedirs(os.path.join(RUN, 'logs'), exist_ok=True)
        if cpus:
            argv = ['taskset', '-c', cpus] + argv
        out = open(os.path.join(RUN, 'logs', name + '.log'), 'ab')
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                             start_new_session=True)
        self.items.append((name, p))
        return p

    def stop(self, names=None):
        keep = []
        for name, p in self.items:
            if names is None or name in names:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            else:
                keep.append((name, p))
        for name, p in self.items:
            if names is None or name in names:
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
        self.items = keep


PROCS = Procs()


def as_postgres(argv):
    return (['runuser', '-u', 'postgres', '--'] if os.geteuid() == 0 else []) + argv


def wait_http(url, seconds=30):
    end = time.time() + seconds
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.1)
    raise SystemExit(f'bench: {url} did not answer in {seconds} s (logs in {RUN}/logs)')


def cpu_seconds(pids):
    tick = os.sysconf('SC_CLK_TCK')
    total = 0.0
    for pid in pids:
        try:
            with open(f'/proc/{pid}/stat') as f:
                fields = f.read().rsplit(')', 1)[1].split()
            total += (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / tick
        except (OSError, IndexError):
            pass
    return total


def descendants(pid):
    """pid and every process below it (from /proc)."""
    children = {}
    for d in os.listdir('/proc'):
        if d.isdigit():
            try:
                with open(f'/proc/{d}/stat') as f:
                    ppid = int(f.read().rsplit(')', 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(children.get(p, []))
    return out


# ---- shared services: PostgreSQL and Redis ----

class Infra:
    def __init__(self, cpus):
        self.cpus = cpus
        self.pg_dir = os.path.join(RUN, 'pg')
        self.redis = None

    def start(self):
        data = os.path.join(self.pg_dir, 'data')
        if not os.path.exists(os.path.join(data, 'PG_VERSION')):
            log('creating a PostgreSQL cluster in .run/bench/pg')
            os.makedirs(self.pg_dir, exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(self.pg_dir, 'postgres')
            subprocess.run(as_postgres([f'{PG_BIN}/initdb', '-D', data, '-A', 'trust', '-U', 'postgres',
                                        '-E', 'UTF8', '--locale', 'C']), check=True, stdout=subprocess.DEVNULL)
        # Defaults (fsync and synchronous_commit on): what a production database does.
        subprocess.run(['taskset', '-c', self.cpus] + as_postgres(
            [f'{PG_BIN}/pg_ctl', '-D', data, '-l', os.path.join(self.pg_dir, 'log'), '-w', '-o',
             f'-p {PG_PORT} -k {self.pg_dir} -c listen_addresses=127.0.0.1 -c max_connections=300 '
             f'-c shared_buffers=256MB', 'start']), check=True, stdout=subprocess.DEVNULL)
        have = subprocess.run(['psql', '-h', '127.0.0.1', '-p', str(PG_PORT), '-U', 'postgres', '-tAc',
                               "SELECT 1 FROM pg_database WHERE datname = 'chat_bench'"],
                              capture_output=True, text=True, check=True).stdout.strip()
        if have != '1':
            subprocess.run(['psql', '-h', '127.0.0.1', '-p', str(PG_PORT), '-U', 'postgres', '-qc',
                            'CREATE DATABASE chat_bench'], check=True)
        subprocess.run([os.path.join(BUILD, 'tools', 'chatctl'), 'migrate'], env={**os.environ, 'CHAT_DATABASE_URL': DB_URL},
                       check=True, stdout=subprocess.DEVNULL)
        self.redis = PROCS.start('redis', ['redis-server', '--port', str(REDIS_PORT), '--bind', '127.0.0.1',
                                           '--save', '', '--appendonly', 'no'], cpus=self.cpus)
        for _ in range(50):
            if subprocess.run(['redis-cli', '-p', str(REDIS_PORT), 'ping'], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)

    def pids(self):
        pids = [self.redis.pid]
        try:
            with open(os.path.join(self.pg_dir, 'data', 'postmaster.pid')) as f:
                pids += descendants(int(f.readline()))
        except OSError:
            pass
        return pids

    def stop(self):
        subprocess.run(as_postgres([f'{PG_BIN}/pg_ctl', '-D', os.path.join(self.pg_dir, 'data'), '-m', 'fast',
                                    '-w', 'stop']), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# ---- the systems under test ----

class Product:
    name = 'product'
    ports = PRODUCT_PORTS

    def __init__(self, cpus, workers):
        self.cpus = cpus
        self.workers = workers
        self.pids = []

    def start(self):
        env = {'CHAT_JWT_SECRET': SECRET, 'CHAT_DATABASE_URL': DB_URL, 'CHAT_REDIS_URL': f'redis://127.0.0.1:{REDIS_PORT}',
               'CHAT_PRESENCE_EVENTS': 'none', 'CHAT_RATE_LIMIT': '1000000', 'CHAT_RATE_BURST': '1000000',
               'CHAT_LOG_LEVEL': 'warn', 'CHAT_HOST': '127.0.0.1', 'CHAT_WORKERS': str(self.workers)}
        self.pids = []
        for i, port in enumerate(self.ports):
            iid = 'ab'[i]
            sock = os.path.join(RUN, f'broker-{iid}.sock')
            b = PROCS.start(f'broker-{iid}', [os.path.join(BUILD, 'broker', 'chat-broker'), '--broker-socket', sock],
                            env={**env, 'CHAT_INSTANCE_ID': f'bench-{iid}'}, cpus=self.cpus)
            g = PROCS.start(f'gateway-{iid}', [os.path.join(BUILD, 'gateway', 'chat-gateway')],
                            env={**env, 'CHAT_INSTANCE_ID': f'bench-{iid}', 'CHAT_PORT': str(port),
                                 'CHAT_BROKER_SOCKET': sock}, cpus=self.cpus)
            self.pids += [str(b.pid), f'tree:{g.pid}']
        for port in self.ports:
            wait_http(f'http://127.0.0.1:{port}/readyz')
        time.sleep(0.5)

    def stop(self):
        PROCS.stop([f'{k}-{i}' for k in ('broker', 'gateway') for i in 'ab'])


class Peer:
    name = 'peer'
    ports = PEER_PORTS

    def __init__(self, cpus):
        self.cpus = cpus
        self.pids = []

    def start(self):
        self.pids = []
        for i, port in enumerate(self.ports):
            p = PROCS.start(f'peer-{i}', ['node', os.path.join(ROOT, 'bench', 'peer', 'server.js'), '--port', str(port),
                                          '--redis', f'redis://127.0.0.1:{REDIS_PORT}', '--database', DB_URL,
                                          '--jwt-secret', SECRET, '--presence', 'none'], cpus=self.cpus)
            self.pids.append(str(p.pid))
        for port in self.ports:
            wait_http(f'http://127.0.0.1:{port}/readyz')
        time.sleep(0.5)

    def stop(self):
        PROCS.stop(['peer-0', 'peer-1'])


# ---- one load generator run ----

def loadgen(system, proto, args, infra, load_cpus, label):
    argv = ['taskset', '-c', load_cpus, os.path.join(BUILD, 'bench', 'load', 'loadgen'),
            '--target', ','.join(f'127.0.0.1:{p}' for p in system.ports), '--secret', SECRET,
            '--proto', proto, '--server-pids', ','.join(system.pids), '--label', label] + [str(a) for a in args]
    if proto == 'sio':
        argv += ['--nsp', '/chat']
    infra_pids = infra.pids()
    c0 = cpu_seconds(infra_pids)
    t0 = time.time()
    p = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    c1 = cpu_seconds(infra_pids)
    if p.returncode != 0 or not p.stdout.strip():
        print(p.stderr[-2000:], file=sys.stderr)
        raise SystemExit(f'bench: loadgen failed ({label})')
    r = json.loads(p.stdout)
    r['system'] = system.name
    r['infra_cpu_seconds'] = round(c1 - c0, 3)
    r['wall_seconds'] = round(time.time() - t0, 1)
    srv = r['server']
    print(f'    {label:34s} conn {r["connected"]:>6} sent {r["sent"]:>7} acked/s {r["acked_per_sec"]:>9.0f} '
          f'deliv/s {r["deliveries_per_sec"]:>9.0f} lost {r["lost"]:>5} p50 {r["latency_us"]["p50"] / 1000:8.1f} ms '
          f'p99 {r["latency_us"]["p99"] / 1000:8.1f} ms cpu {srv["cpu_seconds"]:6.2f} s '
          f'(user {srv["cpu_user_seconds"]:5.2f}) deliv/cpu-s {srv["deliveries_per_cpu_second"]:>9.0f} '
          f'anon/conn {srv["anon_bytes_per_connection"]:>7.0f} B',
          file=sys.stderr, flush=True)
    return r


def first_cpu(cpus):
    return cpus.split(',')[0].split('-')[0]


FLOORS = {}


def send_floor(args, P, size, conns, rate, label):
    """bench/load/sendfloor in the shape of one fan-out point: the kernel CPU of one
    loopback write of one frame, in the servers' CPU, with the reader on the load CPU; the
    median of the repeats (µs per write). Measured once per shape."""
    if (size, conns, rate) in FLOORS:
        return FLOORS[(size, conns, rate)]
    vals = []
    for _ in range(P['repeats']):
        p = subprocess.run([os.path.join(BUILD, 'bench', 'load', 'sendfloor'), '--connections', str(conns),
                            '--burst', str(min(size, conns)), '--rate', str(rate), '--seconds', str(P['duration']),
                            '--writer-cpu', first_cpu(args.server_cpus), '--reader-cpu', first_cpu(args.load_cpus)],
                           capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise SystemExit(f'bench: sendfloor failed: {p.stderr.strip()}')
        vals.append(json.loads(p.stdout)['us_per_write'])
    v = statistics.median(vals)
    print(f'    {"floor " + label:34s} one loopback write: {v:.2f} µs of the writer\'s CPU '
          f'(repeats {", ".join(f"{x:.2f}" for x in vals)})', file=sys.stderr, flush=True)
    FLOORS[(size, conns, rate)] = {'label': label, 'room': size, 'connections': conns, 'rate': rate,
                                   'us_per_write': v, 'repeats': vals}
    return FLOORS[(size, conns, rate)]


def median_run(runs):
    """The run with the median deliveries per CPU-second (or acked/s), kept whole."""
    key = (lambda r: r['server']['deliveries_per_cpu_second'] or r['acked_per_sec'])
    s = sorted(runs, key=key)
    return s[len(s) // 2]


SATURATED_P99_US = 1_000_000  # a chat message or an ack a second late: the system is queueing, not keeping up


def saturated(r):
    exp = max(r['expected'], 1)
    return (r['lost'] > 0.01 * exp or r['ack_errors'] > 0.01 * max(r['sent'], 1)
            or r['latency_us']['p99'] > SATURATED_P99_US or r['ack_latency_us']['p99'] > SATURATED_P99_US)


# ---- the plan ----

def plan(quick):
    if quick:
        return {
            'repeats': 1, 'duration': 5, 'warmup': 1, 'drain': 2,
            'ladder': {'room': 100, 'connections': 1000, 'rates': [100]},
            'rooms': [(100, 1000, 100)],
            'dm': (1000, 300),
            'senders': {'connections': 500, 'rates': [2000]},
            'idle': [5000], 'idle_product_max': None,
        }
    return {
        'repeats': 3, 'duration': 10, 'warmup': 2, 'drain': 3,
        # latency vs offered load: rooms of 100 members, messages/s (x100 deliveries/s)
        'ladder': {'room': 100, 'connections': 1000, 'rates': [25, 50, 100, 200, 400, 800]},
        # deliveries per CPU-second at 10k deliveries/s for each room size: (size, connections, msgs/s)
        'rooms': [(10, 1000, 1000), (100, 1000, 100), (1000, 2000, 10)],
        'dm': (2000, 500),
        'senders': {'connections': 1000, 'rates': [1000, 2000, 5000, 10000, 20000, 30000, 40000]},
        'idle': [1000, 5000, 10000, 20000], 'idle_product_max': 50000,
    }


RPS_LO = '/sys/class/net/lo/queues/rx-0/rps_cpus'


def cpu_mask(cpus):
    """A taskset CPU list ("0", "0-1", "0,2") as the hex mask sysfs takes."""
    m = 0
    for part in cpus.split(','):
        a, _, b = part.partition('-')
        for c in range(int(a), int(b or a) + 1):
            m |= 1 << c
    return f'{m:x}'


def run(args):
    P = plan(args.quick)
    if args.repeats:
        P['repeats'] = args.repeats
    if args.rps:
        # Receive Packet Steering on loopback: the receive half of every loopback packet
        # (TCP input, waking the reader) runs on the load CPUs instead of in the sender's
        # system call, as it would on the clients' own hosts. Restored after the run.
        with open(RPS_LO) as f:
            saved = f.read().strip()
        with open(RPS_LO, 'w') as f:
            f.write(cpu_mask(args.load_cpus))
        try:
            res = run_plan(args, P)
        finally:
            with open(RPS_LO, 'w') as f:
                f.write(saved)
        res['rps'] = cpu_mask(args.load_cpus)
        return res
    return run_plan(args, P)


def run_plan(args, P):
    infra = Infra(args.load_cpus)
    product = Product(args.server_cpus, args.workers)
    peer = Peer(args.server_cpus)
    systems = [(product, 'sio'), (product, 'raw'), (peer, 'sio')]
    if args.no_peer:
        systems = [s for s in systems if s[0] is not peer]
    results = {'plan': P, 'runs': [], 'started': datetime.datetime.utcnow().isoformat(timespec='seconds') + 'Z',
               'quick': args.quick}
    common = ['--warmup', P['warmup'], '--drain', P['drain']]
    only = set(args.only.split(',')) if args.only else None

    def wanted(k):
        return only is None or k in only

    # The floor first, with nothing else running: the same writes as each fan-out point
    # below, by a process that does nothing but write them.
    log('the floor: one loopback write of one 150-byte frame (bench/load/sendfloor), shaped like each fan-out point')
    results['floor'] = []
    if wanted('rooms'):
        results['floor'] += [dict(send_floor(args, P, size, conns, rate, f'rooms of {size} @{rate}/s'), kind='rooms')
                             for size, conns, rate in P['rooms']]
    if wanted('ladder'):
        L = P['ladder']
        results['floor'] += [dict(send_floor(args, P, L['room'], L['connections'], rate,
                                             f'rooms of {L["room"]} @{rate}/s'), kind='ladder')
                             for rate in L['rates']]
    infra.start()
    try:
        product.start()
        if not args.no_peer:
            peer.start()

        def go(kind, sysproto, extra, label, repeats=None, **meta):
            sysm, proto = sysproto
            runs = [loadgen(sysm, proto, extra, infra, args.load_cpus, f'{sysm.name}/{proto} {label}')
                    for _ in range(repeats or P['repeats'])]
            m = median_run(runs)
            m.update({'kind': kind, 'target': f'{sysm.name}/{proto}', **meta,
                      'repeats': [{'deliveries_per_cpu_second': r['server']['deliveries_per_cpu_second'],
                                   'acked_per_sec': r['acked_per_sec'], 'p50_us': r['latency_us']['p50'],
                                   'p99_us': r['latency_us']['p99']}
                                  for r in runs]})
            results['runs'].append(m)
            return m

        L = P['ladder']
        if not wanted('ladder'):
            L = {**L, 'rates': []}
        log(f'fan-out, latency vs offered load (rooms of {L["room"]}, {L["connections"]} connections)')
        for sp in systems:
            for rate in L['rates']:
                m = go('ladder', sp, ['--scenario', 'fanout', '--connections', L['connections'], '--room-size',
                                      L['room'], '--rate', rate, '--duration', P['duration'], *common],
                       f'fanout {L["room"]} @{rate}/s', offered=rate * L['room'], rate=rate)
                if saturated(m):
                    log(f'{m["target"]} saturated at {rate} msgs/s; higher rates skipped')
                    break

        log('fan-out, deliveries per server CPU-second by room size (equal offered deliveries/s)')
        for size, conns, rate in (P['rooms'] if wanted('rooms') else []):
            for sp in systems:
                go('rooms', sp, ['--scenario', 'fanout', '--connections', conns, '--room-size', size, '--rate', rate,
                                 '--duration', P['duration'], *common], f'fanout {size} @{rate}/s',
                   room=size, offered=rate * size, rate=rate)

        conns, rate = P['dm']
        log('direct messages')
        for sp in (systems if wanted('dm') else []):
            go('dm', sp, ['--scenario', 'dm', '--connections', conns, '--rate', rate, '--duration', P['duration'],
                          *common], f'dm @{rate}/s', offered=rate, rate=rate)

        S = P['senders']
        log(f'acked sends/s ({S["connections"]} senders, each alone in its room)')
        for sp in (systems if wanted('senders') else []):
            for rate in S['rates']:
                m = go('senders', sp, ['--scenario', 'senders', '--connections', S['connections'], '--room-size', 1,
                                       '--rate', rate, '--duration', P['duration'], *common],
                       f'senders @{rate}/s', offered=rate, rate=rate)
                if saturated(m) or m['acked_per_sec'] < 0.9 * rate:
                    log(f'{m["target"]} saturated at {rate} sends/s; higher rates skipped')
                    break

        log('idle connections: memory (servers restarted before each size)')
        sizes = [(s, systems) for s in P['idle']] if wanted('idle') else []
        if P['idle_product_max'] and wanted('idle'):
            sizes.append((P['idle_product_max'], [s for s in systems if s[0] is product and s[1] == 'raw']))
            if not args.no_peer:
                sizes.append((35000, [s for s in systems if s[0] is peer]))
        for n, syss in sizes:
            for sp in syss:
                sp[0].stop()
                sp[0].start()
                # Warm-up: 200 connections, opened and closed, so that the code paths are
                # paged in and the one-time allocations of the first connection are made
                # before the baseline is read; not counted.
                loadgen(sp[0], sp[1], ['--scenario', 'idle', '--connections', 200, '--duration', 0.5, '--settle', 1],
                        infra, args.load_cpus, f'{sp[0].name}/{sp[1]} idle warm-up')
                time.sleep(1)
                # Measured once per size on freshly started servers: a repeat on the same
                # processes would reuse the memory that the previous run freed.
                procs = max(1, -(-n // 15000))
                go('idle', sp, ['--scenario', 'idle', '--connections', n, '--duration', 2, '--settle', 2,
                                '--procs', procs], f'idle {n}', repeats=1, offered=n)
    finally:
        PROCS.stop()
        infra.stop()
    results['finished'] = datetime.datetime.utcnow().isoformat(timespec='seconds') + 'Z'
    return results


# ---- report ----

def machine():
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            return '?'
    model = sh("lscpu | sed -n 's/^Model name: *//p'") or platform.processor()
    mem = sh("free -g | awk '/Mem:/ {print $2}'")
    return {
        'cpu': f'{model}, {os.cpu_count()} CPUs', 'memory_gib': mem, 'kernel': platform.release(),
        'os': sh('. /etc/os-release && echo $PRETTY_NAME'), 'gcc': sh('gcc -dumpfullversion'),
        'node': sh('node --version'), 'redis': sh("redis-server --version | sed 's/.*v=\\([^ ]*\\).*/\\1/'"),
        'postgresql': sh(f'{PG_BIN}/postgres --version'), 'libevent': sh('pkg-config --modversion libevent'),
    }


def pick(res, kind, target, **kw):
    for r in res['runs']:
        if r['kind'] == kind and r['target'] == target and all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def ratio(a, b):
    if a is None or b is None or not b:
        return '–'
    return f'{a / b:.1f}×'


def fmt_ms(us):
    return f'{us / 1000:.1f}' if us < 100_000 else f'{us / 1000:.0f}'


def latency_of(run, pct):
    """(value, text): the median over the repeats of each repeat's percentile, with their range
    in the text; the run's own value when the repeats did not record it."""
    vals = sorted(x[f'{pct}_us'] for x in run.get('repeats', []) if f'{pct}_us' in x)
    if len(vals) < 2:
        v = run['latency_us'][pct]
        return v, fmt_ms(v)
    v = statistics.median(vals)
    return v, f'{fmt_ms(v)} ({fmt_ms(vals[0])}–{fmt_ms(vals[-1])})'


def sustained(res, target):
    best = None
    for r in res['runs']:
        if r['kind'] == 'senders' and r['target'] == target and not saturated(r) and r['acked_per_sec'] >= 0.9 * r['rate']:
            if best is None or r['acked_per_sec'] > best['acked_per_sec']:
                best = r
    return best


def per_user_second(run):
    """(deliveries per user-space CPU-second or None, its text). /proc counts utime in 10 ms
    ticks: a run under one tick of user time has no finite value, only a lower bound."""
    if not run:
        return None, '0'
    user = run['server']['cpu_user_seconds']
    if not user:
        return None, f'> {run["delivered"] / 0.01:,.0f} (under one 10 ms tick)'
    return run['delivered'] / user, f'{run["delivered"] / user:,.0f}'


def floor_of(res, kind, size, rate):
    for f in res.get('floor', []):
        if f['kind'] == kind and f['room'] == size and f['rate'] == rate:
            return f
    return None


def floor_row(w, f, peer_value, shape):
    """The ceiling: a server whose only work is one loopback write per delivery."""
    if not f or not f['us_per_write']:
        return
    fv = 1e6 / f['us_per_write']
    w(f'| … a server doing nothing but one loopback write per delivery ({f["us_per_write"]:.1f} µs each, '
      f'bench/load/sendfloor in the same shape), {shape}: the most any server can reach here | '
      f'{fv:,.0f} | {peer_value or 0:,.0f} | {ratio(fv, peer_value)} |')


def report(res, out_dir, plots):
    M = res['machine']
    lines = []
    w = lines.append
    w(f'Run {res["started"]} – {res["finished"]}{" (--quick)" if res["quick"] else ""}, '
      f'{res["plan"]["repeats"]} repeat(s) per point (median shown; latency rows: the median of the '
      f'repeats\' percentiles, their range in parentheses).')
    if res.get('rps'):
        w('')
        w(f'Loopback receive processing steered to the load CPUs (RPS mask {res["rps"]} on lo, `--rps`): the '
          'receive half of each delivery (TCP input, waking the client) is not on the servers\' CPU, as with '
          'clients on other hosts; neither is the processing of the clients\' ACKs.')
    if res.get('merged'):
        w('')
        w(f'Scenarios {", ".join(res["merged"]["scenarios_rerun"])} from this run; the others from the run of '
          f'{res["merged"]["others_from"]} (same commit and machine).')
    w('')
    w(f'Machine: {M["cpu"]}, {M["memory_gib"]} GiB, {M["os"]}, Linux {M["kernel"]}; gcc {M["gcc"]}, '
      f'libevent {M["libevent"]}, Node {M["node"]}, Redis {M["redis"]}, {M["postgresql"]}.')
    w('')
    # headline ratios
    w('| measure | product | peer | product / peer |')
    w('|---|---:|---:|---:|')
    L = res['plan']['ladder']
    for size, _, rate in res['plan']['rooms']:
        a = pick(res, 'rooms', 'product/sio', room=size)
        b = pick(res, 'rooms', 'peer/sio', room=size)
        av = a['server']['deliveries_per_cpu_second'] if a else None
        bv = b['server']['deliveries_per_cpu_second'] if b else None
        w(f'| deliveries per server CPU-second, rooms of {size} ({rate * size} deliveries/s offered) | '
          f'{av or 0:,.0f} | {bv or 0:,.0f} | {ratio(av, bv)} |')
        (au, at), (bu, bt) = per_user_second(a), per_user_second(b)
        w(f'| … per user-space CPU-second only (kernel time excluded), rooms of {size} | '
          f'{at} | {bt} | {ratio(au, bu)} |')
        floor_row(w, floor_of(res, 'rooms', size, rate), bv, f'rooms of {size}')
    tops = {}
    for t in ('product/sio', 'peer/sio'):
        ok = [r for r in res['runs'] if r['kind'] == 'ladder' and r['target'] == t and not saturated(r)]
        tops[t] = max(ok, key=lambda r: r['offered']) if ok else None
    a, b = tops['product/sio'], tops['peer/sio']
    if a or b:
        av = a['server']['deliveries_per_cpu_second'] if a else None
        bv = b['server']['deliveries_per_cpu_second'] if b else None
        w(f'| deliveries per server CPU-second at each one\'s highest unsaturated fan-out load '
          f'(product {a["offered"] if a else 0:,}/s, peer {b["offered"] if b else 0:,}/s offered) | '
          f'{av or 0:,.0f} | {bv or 0:,.0f} | {ratio(av, bv)} |')
        if b:
            floor_row(w, floor_of(res, 'ladder', L['room'], b['rate']), bv, f'{b["offered"]:,}/s')
    n = max(res['plan']['idle'])
    a = pick(res, 'idle', 'product/sio', offered=n)
    b = pick(res, 'idle', 'peer/sio', offered=n)
    av = a['server']['anon_bytes_per_connection'] if a else None
    bv = b['server']['anon_bytes_per_connection'] if b else None
    if a or b:
        w(f'| user-space bytes per idle connection ({n:,} connections; anonymous RSS of all server processes) | '
          f'{av or 0:,.0f} | {bv or 0:,.0f} | {ratio(av, bv)} |')
    for rate in L['rates']:
        a = pick(res, 'ladder', 'product/sio', rate=rate)
        b = pick(res, 'ladder', 'peer/sio', rate=rate)
        if not a:
            continue
        for pct in ('p50', 'p99'):
            av, at = latency_of(a, pct)
            bv, bt = latency_of(b, pct) if b else (None, '')
            peer_s = (bt + (' (saturated)' if saturated(b) else '')) if b else 'saturated below'
            w(f'| {pct} latency, ms, {rate * L["room"]:,} deliveries/s offered (rooms of {L["room"]}) | '
              f'{at} | {peer_s} | {ratio(av, bv)} |')
    a = sustained(res, 'product/sio')
    b = sustained(res, 'peer/sio')
    if any(r['kind'] == 'senders' for r in res['runs']):
        w(f'| acked sends/s, highest sustained rate (≥ 90 % of offered acked, ack p99 ≤ {SATURATED_P99_US / 1e6:g} s, no loss) | '
          f'{a["acked_per_sec"] if a else 0:,.0f} | {b["acked_per_sec"] if b else 0:,.0f} | '
          f'{ratio(a and a["acked_per_sec"], b and b["acked_per_sec"])} |')
    held = {t: max([r['connected'] for r in res['runs'] if r['kind'] == 'idle' and r['target'].startswith(t)] or [0])
            for t in ('product', 'peer')}
    if any(held.values()):
        w(f'| idle connections held (largest attempted) | {held["product"]:,} | {held["peer"]:,} | '
          f'{ratio(held["product"], held["peer"])} |')
    w('')
    # detail tables
    w('Every run (the median of the repeats):')
    w('')
    w('| scenario | target | connections | offered | sent | acked/s | delivered/s | lost | dup | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | ack p99 ms | server CPU-s (user+sys) | deliveries/CPU-s | Redis+PG CPU-s | bytes/conn anon (RSS) |')
    w('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    for r in res['runs']:
        l = r['latency_us']
        scen = {'ladder': f'fanout {r["room_size"]} @{r["rate"]:g}/s', 'rooms': f'fanout {r["room_size"]} @{r["rate"]:g}/s',
                'dm': f'dm @{r["rate"]:g}/s', 'senders': f'senders @{r["rate"]:g}/s', 'idle': 'idle'}[r['kind']]
        s = r['server']
        w(f'| {scen} | {r["target"]} | {r["connected"]:,} | {r["offered"]:,} | {r["sent"]:,} | {r["acked_per_sec"]:,.0f} | '
          f'{r["deliveries_per_sec"]:,.0f} | {r["lost"]} | {r["duplicates"]} | {fmt_ms(l["p50"])} | {fmt_ms(l["p90"])} | '
          f'{fmt_ms(l["p99"])} | {fmt_ms(l["p999"])} | {fmt_ms(l["max"])} | {fmt_ms(r["ack_latency_us"]["p99"])} | '
          f'{s["cpu_seconds"]:.2f} ({s["cpu_user_seconds"]:.2f}+{s["cpu_system_seconds"]:.2f}) | '
          f'{s["deliveries_per_cpu_second"]:,.0f} | {r["infra_cpu_seconds"]:.2f} | '
          + (f'{s["anon_bytes_per_connection"]:,.0f} ({s["rss_bytes_per_connection"]:,.0f})' if r['kind'] == 'idle' else '')
          + ' |')
    w('')
    if plots:
        w('![latency vs offered load](bench/latency.png)')
        w('')
        w('![memory vs connections](bench/memory.png)')
        w('')
    return '\n'.join(lines)


def plot(res, out_dir):
    if not shutil.which('gnuplot'):
        return False
    L = res['plan']['ladder']

    def data_files(kind, name, key, row):
        """One gnuplot data file per target with runs of `kind`: [(target, path)]."""
        out = []
        for t in ('product/sio', 'product/raw', 'peer/sio'):
            pts = sorted((r for r in res['runs'] if r['kind'] == kind and r['target'] == t), key=key)
            if not pts:
                continue
            fn = os.path.join(out_dir, f'{name}-{t.replace("/", "-")}.dat')
            with open(fn, 'w') as f:
                f.writelines(row(r) + '\n' for r in pts)
            out.append((t, fn))
        return out

    series = data_files('ladder', 'latency', lambda r: r['offered'],
                        lambda r: f'{r["offered"]} {r["latency_us"]["p50"] / 1000} {r["latency_us"]["p99"] / 1000}')
    mem = data_files('idle', 'memory', lambda r: r['connected'],
                     lambda r: f'{r["connected"]} {r["server"]["anon_kib_connected"] / 1024} '
                               f'{r["server"]["rss_kib_connected"] / 1024}')
    cairo = subprocess.run(['gnuplot', '-e', 'set terminal pngcairo'], capture_output=True).returncode == 0
    gp = [
        'set terminal pngcairo size 900,540 font ",11"' if cairo else 'set terminal png size 900,540',
        f'set output "{out_dir}/latency.png"',
        f'set title "Fan-out latency vs offered load (rooms of {L["room"]}, {L["connections"]} connections)"',
        'set xlabel "offered deliveries/s"', 'set ylabel "latency, ms (log)"', 'set logscale y', 'set logscale x',
        'set grid', 'set key top left',
    ]
    parts = []
    for t, fn in series:
        parts.append(f'"{fn}" using 1:2 with linespoints title "{t} p50"')
        parts.append(f'"{fn}" using 1:3 with linespoints dashtype 2 title "{t} p99"')
    if parts:
        gp.append('plot ' + ', '.join(parts))
    gp += ['unset logscale', f'set output "{out_dir}/memory.png"', 'set title "Server memory vs idle connections"',
           'set xlabel "idle connections"', 'set ylabel "anonymous RSS of the server processes, MiB"', 'set logscale x',
           'set key top left']
    parts = [f'"{fn}" using 1:2 with linespoints title "{t}"' for t, fn in mem]
    if parts:
        gp.append('plot ' + ', '.join(parts))
    subprocess.run(['gnuplot'], input='\n'.join(gp) + '\n', text=True, check=False)
    return os.path.exists(os.path.join(out_dir, 'latency.png'))


def main():
    ap = argparse.ArgumentParser(description='product vs peer benchmark (scripts/bench)')
    ap.add_argument('--quick', action='store_true', help='one short run of each scenario (< 5 min)')
    ap.add_argument('--repeats', type=int, default=0, help='repeats per point (default 3, quick 1)')
    ap.add_argument('--no-peer', action='store_true', help='measure the product only')
    ap.add_argument('--workers', type=int, default=2, help='workers per gateway instance (default 2)')
    ap.add_argument('--server-cpus', default='1', help='CPUs of the servers under test (taskset list)')
    ap.add_argument('--load-cpus', default='0', help='CPUs of loadgen, Redis and PostgreSQL')
    ap.add_argument('--out', default=os.path.join(ROOT, 'bench', 'out'), help='results directory')
    ap.add_argument('--only', default='', help='comma-separated scenarios: ladder,rooms,dm,senders,idle')
    ap.add_argument('--merge', default='', help='with --only: take the other scenarios from this earlier results.json')
    ap.add_argument('--write-docs', action='store_true', help='update docs/BENCHMARKS.md and docs/bench/*.png')
    ap.add_argument('--rps', action='store_true', help='steer loopback receive processing to the load CPUs '
                    '(RPS on lo) for the run, as if the clients were on other hosts')
    ap.add_argument('--render', default='', help='run nothing: write the report (and, with --write-docs, the docs) '
                    'from this earlier results.json')
    args = ap.parse_args()
    if os.cpu_count() < 2:
        args.server_cpus = args.load_cpus = '0'

    stamp = datetime.datetime.utcnow().strftime('%Y%m%dT%H%M%SZ')
    out_dir = os.path.join(args.out, stamp)
    os.makedirs(out_dir, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    if args.render:
        with open(args.render) as f:
            res = json.load(f)
    else:
        res = run(args)
    if args.merge:
        if not args.only:
            raise SystemExit('bench: --merge needs --only')
        with open(args.merge) as f:
            old = json.load(f)
        only = set(args.only.split(','))
        res['runs'] = [r for r in old['runs'] if r['kind'] not in only] + res['runs']
        res['floor'] = [f for f in old.get('floor', []) if f['kind'] not in only] + res.get('floor', [])
        res['merged'] = {'scenarios_rerun': sorted(only), 'others_from': old['started'] + ' – ' + old['finished']}
    if not args.render:
        res['machine'] = machine()
        res['command'] = 'scripts/bench ' + ' '.join(sys.argv[1:])
    with open(os.path.join(out_dir, 'results.json'), 'w') as f:
        json.dump(res, f, indent=1)
    plots = plot(res, out_dir)
    text = report(res, out_dir, plots)
    with open(os.path.join(out_dir, 'report.md'), 'w') as f:
        f.write(text + '\n')
    # the ratio table on stdout
    print(text.split('\n\nEvery run')[0])
    print(f'\nfull report: {os.path.relpath(out_dir, ROOT)}/report.md, raw results: results.json', file=sys.stderr)
    if args.write_docs:
        doc = os.path.join(ROOT, 'docs', 'BENCHMARKS.md')
        os.makedirs(os.path.join(ROOT, 'docs', 'bench'), exist_ok=True)
        for png in ('latency.png', 'memory.png'):
            if os.path.exists(os.path.join(out_dir, png)):
                shutil.copy(os.path.join(out_dir, png), os.path.join(ROOT, 'docs', 'bench', png))
        shutil.copy(os.path.join(out_dir, 'results.json'), os.path.join(ROOT, 'docs', 'bench', 'results.json'))
        with open(doc) as f:
            cur = f.read()
        a, b = '<!-- bench:begin -->', '<!-- bench:end -->'
        if a in cur and b in cur:
            cur = cur[:cur.index(a) + len(a)] + '\n' + text + '\n' + cur[cur.index(b):]
            with open(doc, 'w') as f:
                f.write(cur)
            print('docs/BENCHMARKS.md updated', file=sys.stderr)


if __name__ == '__main__':
    main()

"""blockhub-sim command line: generate, pace, send, and write the ground truth."""
import argparse
import datetime
import json
import os
import random
import re
import signal
import sys
import time

from . import feeds, geo, plant, sinks

DEPTS = ("market", "traffic", "fire")
DEFAULT_BASE = "2026-11-27T08:00:00+08:00"
TRUTH_FORMAT = "blockhub-sim truth 1"


class TokenBucket:
    """RATE tokens a second, at most BURST saved up; take() waits for one."""

    def __init__(self, rate, burst):
        self.rate = rate
        self.cap = max(1.0, burst)
        self.tokens = 1.0
        self.last = time.monotonic()

    def take(self, stop=None):
        """Waits for a token; False (no token taken) once STOP is requested."""
        while True:
            if stop is not None and stop.requested():
                return False
            now = time.monotonic()
            self.tokens = min(self.cap, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            time.sleep(min(0.1, (1.0 - self.tokens) / self.rate))


def parse_fractions(text, what, allow_single=False):
    """'market=0.3,traffic=0.5' -> dict; with ALLOW_SINGLE a bare number applies to all."""
    if allow_single and re.fullmatch(r"[0-9.]+", text.strip()):
        v = float(text)
        return {d: v for d in DEPTS}
    out = {}
    for part in text.split(","):
        name, sep, val = part.partition("=")
        name = name.strip()
        if not sep or name not in DEPTS:
            raise argparse.ArgumentTypeError("%s: %r is not DEPT=FRACTION (DEPT: %s)"
                                             % (what, part, ", ".join(DEPTS)))
        try:
            out[name] = float(val)
        except ValueError:
            raise argparse.ArgumentTypeError("%s: %r is not a number" % (what, val))
        if out[name] < 0:
            raise argparse.ArgumentTypeError("%s: %s is negative" % (what, name))
    return out


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="blockhub-sim",
        description="Simulate the market (spool CSV), traffic (TCP NDJSON) and fire (HTTP webhook) "
                    "feeds of docs/feeds.md at a chosen rate and mix, resolving to the blocks of a block "
                    "map, and write the ground truth of what was sent.")
    ap.add_argument("--blocks", required=True, help="block map (GeoJSON FeatureCollection)")
    ap.add_argument("--seed", type=int, default=1, help="random seed: same seed, same bytes (default 1)")
    ap.add_argument("--rate", type=float, required=True, help="events per second, all departments together")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--duration", type=float, help="seconds of events (count = rate x duration)")
    g.add_argument("--count", type=int, help="number of events")
    ap.add_argument("--mix", default="market=0.3,traffic=0.5,fire=0.2",
                    help="fraction of events per department (default market=0.3,traffic=0.5,fire=0.2); "
                         "normalised over the departments that have a destination")
    ap.add_argument("--bad", default="0",
                    help="fraction of deliberately bad records: one number for all, or "
                         "market=F,traffic=F,fire=F (default 0)")
    ap.add_argument("--spool", help="market: spool directory (omit: no market feed)")
    ap.add_argument("--traffic", help="traffic: HOST:PORT of the adapter (omit: no traffic feed)")
    ap.add_argument("--fire", help="fire: webhook URL, e.g. http://127.0.0.1:8080/v1/fire/events")
    ap.add_argument("--fire-token", default=os.environ.get("BH_FIRE_TOKEN"),
                    help="fire: bearer token (default: $BH_FIRE_TOKEN)")
    ap.add_argument("--truth", help="write the ground truth JSON here (rewritten while running)")
    ap.add_argument("--truth-interval", type=float, default=1.0,
                    help="seconds between rewrites of the truth while running (default 1)")
    ap.add_argument("--stop-timeout", type=float, default=30.0,
                    help="on SIGINT/SIGTERM, seconds to send what is queued before giving it "
                         "up (default 30)")
    ap.add_argument("--connections", type=int, default=1,
                    help="traffic: TCP connections, one gateway each (default 1)")
    ap.add_argument("--traffic-token", default=os.environ.get("BH_TRAFFIC_TOKEN"),
                    help="traffic: send a hello with this token first on every connection (auth "
                         "token; default: $BH_TRAFFIC_TOKEN)")
    ap.add_argument("--traffic-ack", action="store_true",
                    help="traffic: ask for acknowledgements in the hello; a line counts as "
                         "delivered once acknowledged, and what a dropped connection did not "
                         "acknowledge is sent again")
    ap.add_argument("--heartbeat", type=float, default=5.0,
                    help="traffic: seconds between heartbeat lines per connection, 0: none (default 5)")
    ap.add_argument("--traffic-max-line", type=int, default=65536,
                    help="traffic: the adapter's line limit, for too-long bad lines (default 65536)")
    ap.add_argument("--roll-rows", type=int, default=500, help="market: rows per file (default 500)")
    ap.add_argument("--roll-seconds", type=float, default=10.0,
                    help="market: seconds of events per file at most (default 10)")
    ap.add_argument("--market-encoding", default="gb18030",
                    help="market: file encoding (default gb18030; utf-8, utf-8-sig)")
    ap.add_argument("--fire-batch", type=int, default=50, help="fire: most events per POST (default 50)")
    ap.add_argument("--fire-linger", type=float, default=0.5,
                    help="fire: seconds of events gathered into one POST at most (default 0.5)")
    ap.add_argument("--fire-workers", type=int, default=4, help="fire: concurrent senders (default 4)")
    ap.add_argument("--fire-retries", type=int, default=10,
                    help="fire: retries of one POST on 503/timeouts (default 10)")
    ap.add_argument("--fire-timeout", type=float, default=30.0, help="fire: request timeout, s (default 30)")
    ap.add_argument("--connect-timeout", type=float, default=30.0,
                    help="traffic: how long to keep trying to connect, s (default 30)")
    ap.add_argument("--burst", type=float, help="token bucket size (default rate/20, at least 1)")
    ap.add_argument("--base-time", default=DEFAULT_BASE,
                    help="event time of the start, RFC 3339, or 'now' (default %s)" % DEFAULT_BASE)
    ap.add_argument("--id-tag", help="tag inside every event id and file name (default S<seed>, "
                                     "plus the start time with --base-time now)")
    ap.add_argument("--block-skew", type=float, default=1.0,
                    help="spread of block popularity (log-normal sigma; 0: uniform; default 1)")
    ap.add_argument("--plant", type=int, default=0,
                    help="plant N combinations that must fire the join's watches and rules (each in "
                         "a block of its own; their alerts go into the truth's 'plant'; default 0)")
    ap.add_argument("--plant-config",
                    help="with --plant: write the join's watches and rules for the plants here "
                         "(JSON) before anything is sent")
    ap.add_argument("--progress", type=float, default=0,
                    help="print progress to stderr every this many seconds (default 0: never)")
    args = ap.parse_args(argv)
    try:
        args.mix = parse_fractions(args.mix, "--mix")
        args.bad = parse_fractions(args.bad, "--bad", allow_single=True)
    except argparse.ArgumentTypeError as e:
        ap.error(str(e))
    if args.rate <= 0:
        ap.error("--rate must be positive")
    if any(v > 1 for v in args.bad.values()):
        ap.error("--bad fractions are at most 1")
    if args.fire and not args.fire_token:
        ap.error("--fire needs --fire-token (or $BH_FIRE_TOKEN)")
    if args.truth_interval <= 0 or args.stop_timeout < 0:
        ap.error("--truth-interval must be positive and --stop-timeout not negative")
    if args.connections < 1 or args.fire_workers < 1 or args.fire_batch < 1 or args.roll_rows < 1:
        ap.error("--connections, --fire-workers, --fire-batch and --roll-rows are at least 1")
    if args.plant < 0 or (args.plant_config and not args.plant):
        ap.error("--plant is a count, at least 0; --plant-config needs --plant")
    if args.base_time == "now":
        args.base = datetime.datetime.now(feeds.CST).replace(microsecond=0)
    else:
        try:
            args.base = datetime.datetime.fromisoformat(args.base_time.replace("Z", "+00:00"))
        except ValueError:
            ap.error("--base-time %r is not RFC 3339" % args.base_time)
        if args.base.tzinfo is None:
            ap.error("--base-time needs an offset")
    if args.id_tag is None:
        args.id_tag = "S%d" % args.seed
        if args.base_time == "now":
            args.id_tag += "T" + args.base.strftime("%Y%m%d%H%M%S")
    if not re.fullmatch(r"[A-Za-z0-9]+", args.id_tag):
        ap.error("--id-tag: letters and digits only")
    dest = {"market": args.spool, "traffic": args.traffic, "fire": args.fire}
    args.depts = [d for d in DEPTS if dest[d] and args.mix.get(d, 0) > 0]
    if not args.depts:
        ap.error("no department to simulate: give --spool, --traffic and/or --fire with a "
                 "positive --mix fraction")
    for d in DEPTS:
        if dest[d] and args.mix.get(d, 0) <= 0:
            print("blockhub-sim: %s has a destination but no --mix fraction: not simulated" % d,
                  file=sys.stderr)
    return args


def build_truth(args, total, records, market, traffic, fire, stats, final=True, stopped=None,
                planter=None):
    """The truth of the records delivered so far. Not FINAL (written while
    running): only records each sink has confirmed delivered, nothing pending.
    FINAL after a stop (STOPPED: the signal's name): records not known to be
    delivered are listed in stopped.unconfirmed instead of as anomalies."""
    blocks = {}
    events = {d: {} for d in args.depts}
    bad = {d: {} for d in args.depts}
    bad_records = {d: [] for d in args.depts}
    totals = {d: {"sent": 0, "valid": 0, "bad": 0} for d in args.depts}
    anomalies = {"fire_rejected_valid": [], "fire_accepted_bad": [], "fire_reason_mismatch": [],
                 "fire_unconfirmed": [], "traffic_unsent": []}
    unconfirmed = {d: [] for d in args.depts}
    fire_out = fire.outcomes(final) if fire else {}
    unsent = set(traffic.unsent()) if traffic else set()
    for dept, rid, block, etype, kind, reason in records:
        if dept == "market" and rid not in market.delivered:
            if final and stopped:
                unconfirmed[dept].append(rid)
            continue
        if dept == "traffic" and rid not in traffic.delivered:
            if rid in unsent or (final and not stopped):
                anomalies["traffic_unsent"].append(rid)
            elif final:
                unconfirmed[dept].append(rid)
            continue
        if dept == "fire":
            out = fire_out.get(rid, ("pending",))
            if out[0] == "pending" and not final:
                continue
            if stopped and (out[0] in ("not_sent", "pending") or
                            (out[0] == "unconfirmed" and out[1].startswith("stopped"))):
                unconfirmed[dept].append(rid)
                continue
        totals[dept]["sent"] += 1
        if dept == "fire":
            if out[0] in ("unconfirmed", "not_sent", "pending"):
                anomalies["fire_unconfirmed"].append({"id": rid, "why": out[1] if len(out) > 1
                                                      else "no result"})
                continue
            if kind is None and out[0] == "rejected":
                anomalies["fire_rejected_valid"].append({"id": rid, "code": out[1], "reason": out[2]})
                continue
            if kind is not None and out[0] == "accepted":
                anomalies["fire_accepted_bad"].append({"id": rid, "kind": kind})
            elif kind is not None and out[1] != reason:
                anomalies["fire_reason_mismatch"].append({"id": rid, "kind": kind, "expected": reason,
                                                          "code": out[1], "reason": out[2]})
        if kind is None:
            totals[dept]["valid"] += 1
            per = blocks.setdefault(block, {}).setdefault(dept, {})
            per[etype] = per.get(etype, 0) + 1
            events[dept][rid] = [block, etype]
        else:
            totals[dept]["bad"] += 1
            bad[dept][reason] = bad[dept].get(reason, 0) + 1
            bad_records[dept].append({"id": rid, "kind": kind, "reason": reason})
    return {
        "format": TRUTH_FORMAT,
        "final": final,
        "stopped": {"signal": stopped, "unconfirmed": unconfirmed} if stopped else None,
        "params": {
            "blocks": args.blocks, "seed": args.seed, "rate": args.rate, "count": total,
            "mix": {d: args.mix[d] for d in args.depts}, "bad": {d: args.bad.get(d, 0.0) for d in args.depts},
            "base_time": args.base.isoformat(), "id_tag": args.id_tag,
            "destinations": {"market": args.spool, "traffic": args.traffic, "fire": args.fire},
        },
        "totals": totals,
        "blocks": blocks,
        "bad": bad,
        "bad_records": bad_records,
        "event_ids": {d: sorted(events[d]) for d in args.depts},
        "events": events,
        "fire_resent_ids": fire.resent_ids() if fire else [],
        "anomalies": anomalies,
        "plant": {"count": len(planter.plants), "join": planter.config(),
                  "alerts": planter.alerts(events)} if planter is not None else None,
        "stats": stats,
    }


def write_json(path, obj):
    """Replaces PATH at once: a reader (or a crash) sees the old file or the new one."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def on_stop_signal(stop):
    def handler(signum, frame):
        if stop.signal is None:
            stop.signal = signum
        else:
            stop.force = True  # a second signal: give up what is still queued
    return handler


def install_signals(stop):
    """SIGINT and SIGTERM stop the run cleanly however the simulator was started:
    a shell's `&` starts it with SIGINT ignored, and the disposition (and the
    signal mask) is inherited, so both are set here explicitly."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_stop_signal(stop))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


class TruthWriter:
    """Rewrites the truth file every INTERVAL seconds while the simulator runs
    (at least 20 times as long as one build took, so a long run is not slowed
    down by its own truth), and at the end: a crash leaves the truth of what was
    delivered up to the last rewrite."""

    def __init__(self, path, interval, build):
        self.path = path
        self.interval = interval
        self.build = build
        self.next = time.monotonic() + interval

    def maybe(self):
        if self.path is None or time.monotonic() < self.next:
            return
        t0 = time.monotonic()
        write_json(self.path, self.build())
        took = time.monotonic() - t0
        self.next = time.monotonic() + max(self.interval, 20 * took)


def main(argv=None):
    stop = sinks.Stop()
    install_signals(stop)
    args = parse_args(sys.argv[1:] if argv is None else argv)
    rng = random.Random(args.seed)
    try:
        bmap = geo.BlockMap(args.blocks)
    except (OSError, ValueError, KeyError) as e:
        print("blockhub-sim: %s" % e, file=sys.stderr)
        return 2
    base_ms = int(args.base.timestamp() * 1000)
    gen = feeds.Generator(rng, bmap, base_ms, args.id_tag, args.block_skew, args.traffic_max_line,
                          reserved=plant.RESERVED if args.plant else None)
    total = args.count if args.count is not None else int(round(args.rate * args.duration))
    planter = None
    if args.plant:
        try:
            planter = plant.Planter(args.plant, args.depts, bmap.blocks, total, args.seed)
        except ValueError as e:
            print("blockhub-sim: %s" % e, file=sys.stderr)
            return 2
        if args.plant_config:
            write_json(args.plant_config, planter.config())
    weights = [args.mix[d] for d in args.depts]
    kinds = {d: sorted(feeds.BAD_KINDS[d]) for d in args.depts}

    market = traffic = fire = None
    try:
        if "market" in args.depts:
            market = sinks.MarketSpool(args.spool, rng, gen, args.roll_rows, args.roll_seconds,
                                       args.market_encoding)
        if "traffic" in args.depts:
            traffic = sinks.TrafficStreams(args.traffic, gen, args.connections, args.heartbeat,
                                           args.connect_timeout, stop=stop, ack=args.traffic_ack,
                                           token=args.traffic_token)
        if "fire" in args.depts:
            fire = sinks.FireWebhook(args.fire, args.fire_token, rng, args.fire_batch, args.fire_linger,
                                     args.fire_workers, args.fire_timeout, args.fire_retries,
                                     stop=stop)
    except sinks.SinkError as e:
        print("blockhub-sim: %s" % e, file=sys.stderr)
        return 2
    by_dept = {"market": market, "traffic": traffic, "fire": fire}
    active = [s for s in (market, traffic, fire) if s]
    make = {"market": gen.market, "traffic": gen.traffic, "fire": gen.fire}

    records = []
    error = None
    bucket = TokenBucket(args.rate, args.burst if args.burst else args.rate / 20)
    start = time.monotonic()
    next_progress = start + args.progress if args.progress > 0 else None
    generated = 0
    held = 0.0  # seconds the sinks held the generator back (back-pressure)

    def run_stats(final_error=None):
        now = time.monotonic()
        el = now - start
        return {
            "generated": generated, "target_rate": args.rate,
            "generate_seconds": round(el, 3), "seconds": round(el, 3), "sink_seconds": round(held, 3),
            "achieved_rate": None, "delivered_rate": None,
            "market": market.stats() if market else None,
            "traffic": traffic.stats() if traffic else None,
            "fire": fire.stats() if fire else None,
            "error": final_error,
        }

    writer = TruthWriter(args.truth, args.truth_interval, lambda: build_truth(
        args, total, records, market, traffic, fire, run_stats(error), final=False,
        planter=planter))
    try:
        for i in range(total):
            if not bucket.take(stop):
                break
            vt = i / args.rate
            t0 = time.monotonic()
            for s in active:
                s.tick(vt)
            held += time.monotonic() - t0
            dept = rng.choices(args.depts, weights=weights)[0] if len(args.depts) > 1 else args.depts[0]
            kind = rng.choice(kinds[dept]) if rng.random() < args.bad.get(dept, 0) else None
            rec = make[dept](vt, kind)
            # recorded before it is handed over (a sink may deliver it at once),
            # forgotten if the sink does not take it
            records.append((dept, rec.id, rec.block, rec.type, rec.kind, rec.reason))
            t0 = time.monotonic()
            try:
                by_dept[dept].add(rec, vt)
            except (sinks.SinkStopped, sinks.SinkError):
                records.pop()
                raise
            held += time.monotonic() - t0
            generated += 1
            for rec in planter.records(gen, i, vt) if planter else ():
                records.append((rec.dept, rec.id, rec.block, rec.type, None, None))
                t0 = time.monotonic()
                try:
                    by_dept[rec.dept].add(rec, vt)
                except (sinks.SinkStopped, sinks.SinkError):
                    records.pop()
                    raise
                held += time.monotonic() - t0
            writer.maybe()
            if next_progress is not None and time.monotonic() >= next_progress:
                el = time.monotonic() - start
                print("blockhub-sim: %d/%d events, %.1f s, %.1f ev/s"
                      % (generated, total, el, generated / el), file=sys.stderr)
                next_progress += args.progress
    except sinks.SinkStopped:
        pass
    except sinks.SinkError as e:
        error = str(e)
    gen_elapsed = time.monotonic() - start
    # Send what is queued; after a stop signal, for at most --stop-timeout.
    if stop.signal is not None and stop.deadline is None:
        stop.deadline = time.monotonic() + args.stop_timeout
    for s in active:
        s.begin_finish()
    while not all(s.done() for s in active):
        if stop.signal is not None and stop.deadline is None:
            stop.deadline = time.monotonic() + args.stop_timeout
        if stop.forced():
            break
        writer.maybe()
        time.sleep(0.02)
    elapsed = time.monotonic() - start
    stopped = signal.Signals(stop.signal).name if stop.signal is not None else None
    if traffic and traffic.errors() and not error:
        error = traffic.errors()[0]
    if fire and fire.fatal and not error:
        error = fire.fatal
    if stop.force and not error:
        error = "stopped by %s before everything queued was sent" % stopped

    stats = run_stats(error)
    stats.update({
        "generate_seconds": round(gen_elapsed, 3), "seconds": round(elapsed, 3),
        "achieved_rate": round((generated - 1) / gen_elapsed, 1) if generated > 1 and gen_elapsed > 0 else None,
        "delivered_rate": round(generated / elapsed, 1) if elapsed > 0 else None,
    })
    truth = build_truth(args, total, records, market, traffic, fire, stats, final=True, stopped=stopped,
                        planter=planter)
    if args.truth:
        write_json(args.truth, truth)

    an = truth["anomalies"]
    problems = sum(len(v) for v in an.values())
    parts = ["%s %d" % (d, truth["totals"][d]["sent"]) for d in args.depts]
    nbad = sum(truth["totals"][d]["bad"] for d in args.depts)
    extra = []
    if market:
        extra.append("%d files" % stats["market"]["files"])
    if traffic:
        extra.append("%d conn, %d heartbeats, %d reconnects" % (
            stats["traffic"]["connections"], stats["traffic"]["heartbeats"], stats["traffic"]["reconnects"]))
    if planter:
        extra.append("%d of %d planted alerts delivered" % (len(truth["plant"]["alerts"]),
                                                             len(planter.plants)))
    if fire:
        extra.append("%d POSTs, %d 503s, %d resent ids" % (
            stats["fire"]["posts"], stats["fire"]["status_503"], len(truth["fire_resent_ids"])))
    nsent = sum(truth["totals"][d]["sent"] for d in args.depts)
    print("blockhub-sim: seed %d: sent %d events%s (%s; %d bad) in %.1f s: %.1f ev/s achieved "
          "(target %g, %.1f delivered); %s; anomalies %d%s%s%s"
          % (args.seed, nsent, "" if nsent == generated else " of %d generated" % generated,
             ", ".join(parts), nbad, gen_elapsed, stats["achieved_rate"] or 0,
             args.rate, stats["delivered_rate"] or 0, "; ".join(extra), problems,
             "; stopped by " + stopped if stopped else "",
             "; truth " + args.truth if args.truth else "", "; ERROR: " + error if error else ""))
    sys.stdout.flush()
    if error:
        return 1
    return 3 if problems else 0

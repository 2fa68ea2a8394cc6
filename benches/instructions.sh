#!/usr/bin/env bash
# Instructions and cache misses per proxied request (docs/benchmarks.md),
# counted by valgrind's callgrind with its cache simulation: unlike time,
# they do not move with the machine's load, so two builds compare on a
# shared machine. casfront runs under callgrind on one core with three demo
# nodes; wrk sends the CAS mix (benches/anchors/mix.lua) over CONNS
# keep-alive connections (default 400: every connection busy, as under
# saturation); counting starts after WARM seconds (the handshakes) and
# lasts COUNT seconds; requests are read from casfront's metrics.
#
#   apt-get install valgrind wrk haproxy
#   benches/instructions.sh [BINARY...]   # default: this tree's release-lto build
#   HAPROXY=1 benches/instructions.sh     # and HAProxy (benches/anchors/haproxy.cfg)
#   KEEP=/tmp/cg benches/instructions.sh  # keeps each dump there, for
#       callgrind_annotate --sort=DLmr:1,DLmw:1 /tmp/cg/casfront.callgrind
#
# Prints, per binary, per request: Ir (instructions), D1mr/D1mw (first-level
# data misses), I1mr (instruction misses) and LLmr/LLmw (misses of an
# LL-sized cache; LL=2097152,16,64 by default, a 2 MiB L2-like level, since
# the whole last-level cache is seldom one process's on a shared machine).
set -euo pipefail
CONNS=${CONNS:-400}
WARM=${WARM:-15}
COUNT=${COUNT:-25}
LL=${LL:-2097152,16,64}
# HAProxy reserves descriptors for its maxconn (9990 in its anchor).
ulimit -n "$(ulimit -Hn)"
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
for tool in valgrind callgrind_control wrk openssl curl taskset; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install valgrind wrk)" >&2; exit 2; }
done
if [ $# -eq 0 ]; then
    cargo build --profile release-lto --quiet --manifest-path "$root/Cargo.toml"
    set -- "$root/target/release-lto/casfront"
fi
. "$here/common.sh"
[ "${HAPROXY:-0}" = 1 ] && { command -v haproxy >/dev/null || { echo "needs haproxy" >&2; exit 2; }; }
certificate -newkey ec -pkeyopt ec_paramgen_curve:P-256
cp "$here/anchors/casfront.toml" "$dir/"
printf '\n[log]\naccess = false\n[rate_limit]\nrequests_per_second = 0\nburst = 1\nlogin_per_minute = 0\nlogin_burst = 1\n[admin]\nlisten = "127.0.0.1:9903"\n' \
    >>"$dir/casfront.toml"
nodes 1 "$1"
# HAProxy's anchor, with a stats page to count its requests, and a
# maxconn that fits under valgrind's descriptor reserve.
sed 's/maxconn 9990/maxconn 4000/' "$here/anchors/haproxy.cfg" >"$dir/haproxy.cfg"
printf '\nfrontend stats\n    bind 127.0.0.1:9904\n    stats enable\n    stats uri /stats\n' >>"$dir/haproxy.cfg"
# Requests answered so far by the front end under test ($1: its port).
requests() {
    if [ "$1" = 9443 ]; then
        curl -s "http://127.0.0.1:9904/stats;csv" | awk -F, 'NR == 1 {for (i = 1; i <= NF; i++) if ($i == "req_tot") c = i}
            $1 == "cas_front" && $2 == "FRONTEND" {print $c}'
    else
        curl -s http://127.0.0.1:9903/metrics | awk '/^casfront_requests_total/ {s += $NF} END {print s + 0}'
    fi
}
[ "${HAPROXY:-0}" = 1 ] && set -- "$@" haproxy
for bin in "$@"; do
    out=$dir/callgrind.out
    rm -f "$out"*
    if [ "$bin" = haproxy ]; then
        port=9443
        BENCH_DIR=$dir taskset -c 0 valgrind --tool=callgrind --cache-sim=yes --LL="$LL" --instr-atstart=no \
            --callgrind-out-file="$out" haproxy -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
    else
        port=9444
        taskset -c 0 valgrind --tool=callgrind --cache-sim=yes --LL="$LL" --instr-atstart=no \
            --callgrind-out-file="$out" "$bin" run -c "$dir/casfront.toml" >"$dir/casfront.log" 2>&1 &
    fi
    vg=$!
    pids+=("$vg")
    for _ in $(seq 300); do
        curl -skf -o /dev/null "https://127.0.0.1:$port/cas/login" && break
        sleep 0.2
    done
    taskset -c 1 wrk -t1 -c"$CONNS" -d"$((WARM + COUNT + 5))s" -s "$here/anchors/mix.lua" \
        "https://127.0.0.1:$port" >"$dir/wrk.out" &
    wrk=$!
    sleep "$WARM"
    callgrind_control -i on "$vg" >/dev/null 2>&1
    before=$(requests "$port")
    sleep "$COUNT"
    after=$(requests "$port")
    callgrind_control -d "$vg" >/dev/null 2>&1
    wait "$wrk"
    kill "$vg"
    wait "$vg" 2>/dev/null || true
    n=$((after - before))
    # The dump taken with counting on (the one with the most instructions).
    dump=$(for f in "$out".*; do awk -v f="$f" '/^(summary|totals):/ {print $2, f; exit}' "$f"; done | sort -n | tail -1 | cut -d' ' -f2)
    [ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cp "$dump" "$KEEP/$(basename "$bin").callgrind"
    awk -v n="$n" -v bin="$bin" '
        /^events:/ {for (i = 2; i <= NF; i++) ev[i - 1] = $i}
        /^(summary|totals):/ {for (i = 2; i <= NF; i++) t[i - 1] = $i}
        END {
            printf "%s: %d requests counted; per request:", bin, n
            for (i = 1; i in ev; i++) printf " %s %.0f", ev[i], t[i] / n
            print ""
        }' "$dump"
done

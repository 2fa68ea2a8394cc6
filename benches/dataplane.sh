#!/usr/bin/env bash
# Data-plane benchmark (docs/benchmarks.md): wrk over TLS keep-alive with
# a CAS request mix (benches/anchors/mix.lua: validations by ticket, logins
# with TGT and session cookies, the form) against casfront, HAProxy with
# equivalent rules (benches/anchors/haproxy.cfg) and one demo node directly
# (plain HTTP, the floor), all in the same run, alternating, several
# rounds; prints medians and the ratios. The front ends share one core
# (PROXY_CPU); wrk and the demo nodes share the other (LOAD_CPU).
#
#   apt-get install wrk haproxy   # Debian: wrk 4.1, HAProxy 2.6
#   benches/dataplane.sh          # ROUNDS=3 DURATION=10s CONNS="50 400" ACCESS_LOG=false RATE_LIMIT=0
#   KEY=rsa MIX=0 PHASES=handshakes benches/dataplane.sh   # RSA-2048 full handshakes only
#
# KEY (default "rsa ecdsa") is the certificate both front ends serve:
# RSA-2048, what most universities' CAs issue, and ECDSA P-256; the whole
# comparison runs once per key type.
# KX=classic (default) has casfront bench offer X25519 and P-256 only, the
# key exchanges HAProxy 2.6 (OpenSSL 3.0) has, and wrk's: both front ends
# do the same work. KX=pq offers X25519MLKEM768 first, as current browsers
# do: casfront then does the post-quantum key exchange HAProxy cannot.
#
# BASELINE=path/to/casfront adds another casfront build (an earlier commit,
# say) as a fourth target in the same run, with casfront/baseline ratios:
#   git worktree add /tmp/base COMMIT && (cd /tmp/base && cargo build --profile release-lto)
#   BASELINE=/tmp/base/target/release-lto/casfront benches/dataplane.sh
#
# casfront is built with PROFILE (default release-lto, the build to deploy:
# Cargo.toml; about 4 minutes the first time on 2 cores). PROFILE=release
# measures the quicker build.
set -euo pipefail

KEY=${KEY:-rsa ecdsa}
if [ "$(wc -w <<<"$KEY")" -gt 1 ]; then
    for k in $KEY; do
        echo "=== KEY=$k"
        KEY=$k "$0" || exit $?
    done
    exit 0
fi
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
# The wrk mix runs with each of these numbers of keep-alive connections.
CONNS=${CONNS:-50 400}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

# 9000 idle connections need as many descriptors in each process.
ulimit -n "$(ulimit -Hn)"
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
for tool in wrk haproxy openssl taskset curl; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install wrk haproxy)" >&2; exit 2; }
done
PROFILE=${PROFILE:-release-lto}
cargo build --profile "$PROFILE" --quiet --manifest-path "$root/Cargo.toml"
bin=$root/target/$PROFILE/casfront

. "$here/common.sh"

# One certificate for both front ends (a full handshake signs with it).
case $KEY in
    ecdsa) keyopt=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
    rsa) keyopt=(-newkey rsa:2048) ;;
    *) echo "KEY is ecdsa or rsa" >&2; exit 2 ;;
esac
certificate "${keyopt[@]}"
cp "$here/anchors/casfront.toml" "$dir/"
# The HAProxy anchor logs nothing; ACCESS_LOG=true measures casfront's log.
printf '\n[log]\naccess = %s\n' "${ACCESS_LOG:-false}" >>"$dir/casfront.toml"
# HAProxy's anchor limits no rate: neither does casfront's by default (wrk
# sends tens of thousands of requests a second from one address).
# RATE_LIMIT=N measures the limiter's cost with N requests/s allowed per
# client (a burst of N) and N logins a minute (the mix has no login POSTs).
rate=${RATE_LIMIT:-0}
# The per-address rate holds only under pressure ([limits] pressure): to
# measure its cost, it holds always.
if [ "$rate" -gt 0 ]; then
    sed -i 's/^\[limits\]$/[limits]\npressure = 0/' "$dir/casfront.toml"
fi
printf '\n[rate_limit]\nrequests_per_second = %s\nburst = %s\nlogin_per_minute = %s\nlogin_burst = %s\n' \
    "$rate" "$((rate > 0 ? rate : 1))" "$rate" "$((rate > 0 ? rate : 1))" >>"$dir/casfront.toml"

# casfront's first health check runs before it listens: nodes come first.
nodes "$LOAD_CPU" "$bin"
declare -A url=(
    [casfront]=https://127.0.0.1:9444
    [haproxy]=https://127.0.0.1:9443
    [direct]=http://127.0.0.1:18081
    [baseline]=https://127.0.0.1:9445
)
declare -A pid=()
fronts=(casfront haproxy)
if [ -n "${BASELINE:-}" ]; then
    sed -e 's/127.0.0.1:9444/127.0.0.1:9445/' "$dir/casfront.toml" >"$dir/baseline.toml"
    printf '\n[admin]\nlisten = "127.0.0.1:9902"\n' >>"$dir/baseline.toml"
    fronts+=(baseline)
fi
targets=("${fronts[@]}" direct)

# Starts front end $1 (a new process, pid[$1]) and waits until it answers.
start() {
    case $1 in
        casfront) taskset -c "$PROXY_CPU" "$bin" run -c "$dir/casfront.toml" >"$dir/casfront.log" 2>&1 & ;;
        baseline) taskset -c "$PROXY_CPU" "$BASELINE" run -c "$dir/baseline.toml" >"$dir/baseline.log" 2>&1 & ;;
        haproxy) BENCH_DIR=$dir taskset -c "$PROXY_CPU" haproxy -f "$here/anchors/haproxy.cfg" >"$dir/haproxy.log" 2>&1 & ;;
    esac
    pid[$1]=$!
    pids+=("${pid[$1]}")
    for _ in $(seq 100); do
        curl -skf -o /dev/null "${url[$1]}/cas/login" && return 0
        sleep 0.1
    done
    echo "$1 did not start:" >&2
    cat "$dir/$1.log" >&2
    exit 1
}
# Stops it and starts it again: a fresh process.
restart() {
    kill "${pid[$1]}"
    while kill -0 "${pid[$1]}" 2>/dev/null; do sleep 0.05; done
    start "$1"
}
for t in "${fronts[@]}"; do start "$t"; done

# Check that both front ends route by suffix.
for t in "${fronts[@]}"; do
    node=$(curl -sk -D - -o /dev/null \
        "${url[$t]}/cas/serviceValidate?service=x&ticket=ST-1-abcdefgh-cas2" |
        tr -d '\r' | awk -F': ' 'tolower($1)=="x-cas-node" {print $2}')
    [ "$node" = cas2 ] || { echo "$t does not route by suffix (got '$node')" >&2; cat "$dir/$t.log" >&2; exit 1; }
done

# wrk's latency in ms.
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; printf "%.3f", v}'; }

# CPU time (user + system, clock ticks) a process has used so far.
cpu_ticks() { [ -n "${1:-}" ] && awk '{print $14 + $15}' "/proc/$1/stat" || echo 0; }
hz=$(getconf CLK_TCK)

# MIX=0 skips the wrk mix (to run only some PHASES below).
MIX=${MIX:-1}
[ "$MIX" = 0 ] && rounds_mix=0 || rounds_mix=$ROUNDS
out=$dir/wrk.out
for conns in $CONNS; do
for round in $(seq "$rounds_mix"); do
    # The order turns each round, so that no front end always runs first,
    # or right after the same other one.
    turn=$(( (round - 1) % ${#targets[@]} ))
    for t in "${targets[@]:$turn}" "${targets[@]:0:$turn}"; do
        before=$(cpu_ticks "${pid[$t]:-}")
        taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"$DURATION" --latency \
            -s "$here/anchors/mix.lua" "${url[$t]}" >"$out"
        after=$(cpu_ticks "${pid[$t]:-}")
        requests=$(awk '/requests in/ {print $1}' "$out")
        # The front end's CPU per request, in microseconds (0 for direct).
        cpu_us=$(awk -v a="$after" -v b="$before" -v n="$requests" -v hz="$hz" \
            'BEGIN {printf "%.2f", (a - b) * 1e6 / hz / n}')
        rps=$(awk '/^Requests\/sec/ {print $2}' "$out")
        p50=$(awk '$1=="50%" {print $2}' "$out" | to_ms)
        p99=$(awk '$1=="99%" {print $2}' "$out" | to_ms)
        bad=$(awk '/Non-2xx/ {n+=$NF} /Socket errors/ {gsub(/,/,""); n+=$4+$6+$8+$10} END {print n+0}' "$out")
        echo "$t $rps $p50 $p99 $bad $cpu_us $conns" >>"$dir/results"
        printf 'c%-4s round %s %-9s %10s req/s  p50 %7s ms  p99 %7s ms  errors %s  front-end CPU %s us/req\n' \
            "$conns" "$round" "$t" "$rps" "$p50" "$p99" "$bad" "$cpu_us"
    done
done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# col TARGET COLUMN CONNS: the median over the rounds.
col() { awk -v t="$1" -v c="$2" -v n="$3" '$1==t && $7==n {print $c}' "$dir/results" | median; }
# Errors are summed over the rounds, not a median: one bad round counts.
errors() { awk -v t="$1" '$1==t {n+=$5} END {print n+0}' "$dir/results"; }

if [ "$MIX" != 0 ]; then
for conns in $CONNS; do
echo
echo "KEY=$KEY: median of $ROUNDS rounds, wrk -t1 -c$conns -d$DURATION, front ends on CPU $PROXY_CPU, wrk + nodes on CPU $LOAD_CPU"
printf '%-9s %12s %10s %10s %8s %14s\n' target req/s p50_ms p99_ms errors_all cpu_us/req
for t in "${targets[@]}"; do
    printf '%-9s %12s %10s %10s %8s %14s\n' "$t" "$(col "$t" 2 "$conns")" "$(col "$t" 3 "$conns")" "$(col "$t" 4 "$conns")" "$(errors "$t")" "$(col "$t" 6 "$conns")"
done
echo
echo "c$conns casfront/haproxy: throughput $(ratio "$(col casfront 2 "$conns")" "$(col haproxy 2 "$conns")")x, p50 $(ratio "$(col casfront 3 "$conns")" "$(col haproxy 3 "$conns")")x, p99 $(ratio "$(col casfront 4 "$conns")" "$(col haproxy 4 "$conns")")x"
echo "c$conns casfront/haproxy: front-end CPU per request $(ratio "$(col casfront 6 "$conns")" "$(col haproxy 6 "$conns")")x"
echo "c$conns casfront/direct:  throughput $(ratio "$(col casfront 2 "$conns")" "$(col direct 2 "$conns")")x, p50 $(ratio "$(col casfront 3 "$conns")" "$(col direct 3 "$conns")")x"
if [ -n "${BASELINE:-}" ]; then
    echo "c$conns casfront/baseline: throughput $(ratio "$(col casfront 2 "$conns")" "$(col baseline 2 "$conns")")x, p99 $(ratio "$(col casfront 4 "$conns")" "$(col baseline 4 "$conns")")x, front-end CPU per request $(ratio "$(col casfront 6 "$conns")" "$(col baseline 6 "$conns")")x"
    echo "c$conns baseline/haproxy: front-end CPU per request $(ratio "$(col baseline 6 "$conns")" "$(col haproxy 6 "$conns")")x"
fi
done
echo "resident memory after the run: casfront $(ps -o rss= -p "${pid[casfront]}") KiB, haproxy $(ps -o rss= -p "${pid[haproxy]}") KiB"
for t in "${targets[@]}"; do
    [ "$(errors "$t")" = 0 ] || { echo "$t answered with errors: the figures above do not count" >&2; exit 1; }
done
fi

# The same comparison with casfront's own load generator (casfront bench
# --target), alternating front ends, ROUNDS rounds each:
# - flow: the CAS login flow (form, POST, ST validation with a PGT, /proxy,
#   PT validation, single sign-on, second validation), 32 users;
# - handshakes: a new TLS connection (full handshake, no resumption) per
#   request;
# - resume: the same, each connection offering a session ticket of an
#   earlier one: the share that resumed;
# - idle: for each N in IDLE, in a fresh process of each front end, N
#   connections opened, one request each, then held: resident memory while
#   they are, and what each added to it;
# - idleh2: the same over HTTP/2, as browsers hold their connections.
# Each reports the front end's CPU per 1000 requests (and its memory).
# HAProxy reserves two descriptors per connection (maxconn 9990 in its
# anchor): under a hard limit of 20000 descriptors it cannot hold 10000.
IDLE=${IDLE:-2000 9000}
case ${KX:-classic} in
    classic) kx=(--classic-kx) ;;
    pq) kx=() ;;
    *) echo "KX is classic or pq" >&2; exit 2 ;;
esac
PHASE_TIME=${PHASE_TIME:-5s}
field() { python3 -c "import json,sys; s=json.load(sys.stdin)['scenarios'][0]; v=s['$1']; print('-' if v is None else (round(v,3) if isinstance(v,float) else v))"; }
# PHASES picks some of them (default all; "none" for none).
PHASES=${PHASES:-flow handshakes resume idle idleh2}
[ "$PHASES" = none ] && PHASES=
runs=()
: >"$dir/phases"
# The connections an idle run holds (idle2000, idleh2_2000: 2000).
held() { local n=${1#idle}; echo "${n#h2_}"; }
for phase in $PHASES; do
    case $phase in
        idle) for n in $IDLE; do runs+=("idle$n"); done ;;
        idleh2) for n in $IDLE; do runs+=("idleh2_$n"); done ;;
        *) runs+=("$phase") ;;
    esac
done
for run in "${runs[@]}"; do
    for round in $(seq "$ROUNDS"); do
        for t in "${fronts[@]}"; do
            case $run in
                flow) extra=(--users 32) ;;
                handshakes) extra=(--handshakes --users 16) ;;
                resume) extra=(--handshakes --resume --users 16) ;;
                idleh2_*) extra=(--idle "$(held "$run")" --h2); restart "$t" ;;
                idle*) extra=(--idle "$(held "$run")"); restart "$t" ;;
            esac
            taskset -c "$LOAD_CPU" "$bin" bench --target "${url[$t]}/cas" --ca "$dir/cert.pem" --no-nodes \
                --watch-pid "${pid[$t]}" --duration "$PHASE_TIME" --warmup 1s --json "${extra[@]}" "${kx[@]}" \
                >"$dir/$run.$t.$round.json" 2>"$dir/bench.err" ||
                { echo "casfront bench failed ($run, $t):" >&2; cat "$dir/bench.err" >&2; exit 1; }
            j="$dir/$run.$t.$round.json"
            echo "$run $t $(field requests_per_s <"$j") $(field p99_ms <"$j") $(field errors <"$j") $(field cpu_ms_per_1k <"$j") $(field rss_mib <"$j") $(field idle_connections <"$j") $(field rss_per_connection_kib <"$j") $(field resumed <"$j")" >>"$dir/phases"
            printf 'round %s %-10s %-9s %9s req/s  p99 %6s ms  errors %s  CPU %6s ms/1k  RSS %6s MiB  idle %s  KiB/conn %s  resumed %s\n' \
                "$round" "$run" "$t" $(tail -1 "$dir/phases" | cut -d' ' -f3-)
        done
    done
done
pcol() { awk -v p="$1" -v t="$2" -v c="$3" '$1==p && $2==t {print $c}' "$dir/phases" | median; }
echo
echo "KEY=$KEY KX=${KX:-classic}: casfront bench --target, median of $ROUNDS rounds of $PHASE_TIME:"
printf '%-11s %-9s %10s %8s %12s %8s %9s %8s\n' phase target req/s p99_ms cpu_ms/1k rss_MiB KiB/conn resumed
for run in "${runs[@]}"; do
    for t in "${fronts[@]}"; do
        printf '%-11s %-9s %10s %8s %12s %8s %9s %8s\n' "$run" "$t" "$(pcol $run $t 3)" "$(pcol $run $t 4)" "$(pcol $run $t 6)" "$(pcol $run $t 7)" "$(pcol $run $t 9)" "$(pcol $run $t 10)"
    done
done
for run in "${runs[@]}"; do
    case $run in
        flow) echo "casfront/haproxy: login flow throughput $(ratio "$(pcol flow casfront 3)" "$(pcol flow haproxy 3)")x, p99 $(ratio "$(pcol flow casfront 4)" "$(pcol flow haproxy 4)")x, CPU per request $(ratio "$(pcol flow casfront 6)" "$(pcol flow haproxy 6)")x" ;;
        handshakes) echo "casfront/haproxy: handshakes/s $(ratio "$(pcol handshakes casfront 3)" "$(pcol handshakes haproxy 3)")x, CPU per handshake $(ratio "$(pcol handshakes casfront 6)" "$(pcol handshakes haproxy 6)")x" ;;
        resume) echo "casfront/haproxy: reconnects resumed $(pcol resume casfront 10) vs $(pcol resume haproxy 10), reconnects/s $(ratio "$(pcol resume casfront 3)" "$(pcol resume haproxy 3)")x, CPU per reconnect $(ratio "$(pcol resume casfront 6)" "$(pcol resume haproxy 6)")x" ;;
        idle*)
            case $run in idleh2_*) kind=HTTP/2 ;; *) kind=TLS ;; esac
            echo "casfront/haproxy: memory per idle $kind connection ($(held "$run") held) $(ratio "$(pcol $run casfront 9)" "$(pcol $run haproxy 9)")x ($(pcol $run casfront 9) vs $(pcol $run haproxy 9) KiB), resident memory $(ratio "$(pcol $run casfront 7)" "$(pcol $run haproxy 7)")x" ;;
    esac
    if [ -n "${BASELINE:-}" ]; then
        case $run in
            idle*) echo "  casfront/baseline: memory per idle connection $(ratio "$(pcol $run casfront 9)" "$(pcol $run baseline 9)")x" ;;
            *) echo "  casfront/baseline: $run CPU per request $(ratio "$(pcol $run casfront 6)" "$(pcol $run baseline 6)")x" ;;
        esac
    fi
done
# Errors (for idle: connections that did not open) void the comparison.
awk '$5 != 0 && $5 != "-" {bad=1; print "errors in: " $0 > "/dev/stderr"} END {exit bad}' "$dir/phases"

# Sourced by the benchmark scripts: a scratch directory ($dir) and the
# processes they start ($pids), both gone when the script exits; the
# certificate and the demo nodes both scripts use.
dir=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

# certificate OPENSSL_KEY_OPTION...: a self-signed certificate for localhost
# and 127.0.0.1 in $dir (cert.pem, key.pem, and combined.pem for HAProxy).
certificate() {
    openssl req -x509 "$@" -nodes \
        -keyout "$dir/key.pem" -out "$dir/cert.pem" -days 2 -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE 2>/dev/null
    cat "$dir/cert.pem" "$dir/key.pem" >"$dir/combined.pem"
}

# nodes CPU BINARY: three demo CAS nodes (ports 18081-18083) on CPU, once
# they answer (casfront's first health check runs before it listens).
nodes() {
    taskset -c "$1" "$2" demo --nodes-only --nodes 3 --node-port 18081 >"$dir/nodes.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
        curl -sf -o /dev/null http://127.0.0.1:18083/cas/login && break
        sleep 0.1
    done
}

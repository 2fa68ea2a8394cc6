# Sourced by the benchmark scripts: a scratch directory ($dir) and the
# processes they start ($pids), both gone when the script exits.
dir=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

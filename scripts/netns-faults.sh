#!/usr/bin/env bash
# Network fault tests with real namespaces, veth pairs and tc netem.
#
#   scripts/netns-faults.sh          (as root; CI runs it after `cargo test --workspace`)
#
# Topology (every address lives only inside namespaces this script creates;
# no traffic leaves them):
#
#   hub namespace: bridge brc (control net 10.77.0.0/24), bridge brt (target net 10.77.1.0/24)
#   ctl  10.77.0.10           outpost-controller (gRPC :7443, HTTP :8080) + a webhook receiver on its loopback
#   tgt  10.77.1.20           python3 -m http.server :8000 (the monitored target)
#   r1..r3  10.77.0.3N + 10.77.1.3N   one outpost-probe each, region r1..r3, one link per net
#
# Scenarios:
#   (i)  r1 cut from the target (netem loss 100% on its target link): r1 fails,
#        2 of 3 regions still pass → no page (quorum), checked through
#        /api/v1/alerts, the webhook sink and the console sink.
#   (ii) r2 cut from the controller (netem loss 100% on its control link,
#        or the link down) for 25 s, longer than the HTTP/2 keepalive on
#        either side (10 s ping + 5 s timeout): exactly one probe_offline
#        alert, never resolved while cut (the controller noticing the dead
#        stream is not hearing from the probe); after healing it resolves
#        and r2's results produced during the cut are backfilled.
#
# Skips (exit 0) when not root or when `ip netns` is unavailable. Cleans up
# its namespaces and processes on every exit. Prints `N passed, M failed`.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [[ $(id -u) -ne 0 ]]; then
    echo "netns-faults: SKIPPED: needs root (network namespaces, veth, tc); run as root in CI"
    exit 0
fi
if ! command -v ip >/dev/null || ! ip netns list >/dev/null 2>&1; then
    echo "netns-faults: SKIPPED: \`ip netns\` is unavailable"
    exit 0
fi
for tool in python3 curl; do
    command -v "$tool" >/dev/null || { echo "netns-faults: SKIPPED: $tool not installed"; exit 0; }
done

BIN="${NETNS_BIN_DIR:-$ROOT/target/debug}"
if [[ ! -x "$BIN/outpost-controller" || ! -x "$BIN/outpost-probe" ]]; then
    echo "netns-faults: building the binaries"
    (cd "$ROOT" && cargo build -p outpost-controller -p outpost-probe --bins) || exit 1
fi

ID="opf$$"
HUB="$ID-hub"; CTL="$ID-ctl"; TGT="$ID-tgt"
REGIONS=(r1 r2 r3)
WORK="$(mktemp -d /tmp/outpost-netns.XXXXXX)"
PIDS=()
PASSED=0; FAILED=0
START=$(date +%s)

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    sleep 0.3
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
    for ns in "$HUB" "$CTL" "$TGT" "${REGIONS[@]/#/$ID-}"; do
        ip netns del "$ns" 2>/dev/null
    done
    if [[ $FAILED -gt 0 ]]; then
        echo "netns-faults: logs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[%3ss] %s\n' "$(( $(date +%s) - START ))" "$*"; }
pass() { PASSED=$((PASSED + 1)); log "PASS $*"; }
fail() { FAILED=$((FAILED + 1)); log "FAIL $*"; }
in_ns() { local ns="$1"; shift; ip netns exec "$ns" "$@"; }
now_ms() { date +%s%3N; }
api() { in_ns "$CTL" curl -s --max-time 3 "http://10.77.0.10:8080$1"; }
# Runs a python expression over the JSON on stdin (bound to `d`) and prints it.
jq_py() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
sql() { python3 -c "import sqlite3,sys; c=sqlite3.connect('file:$WORK/outpost.db?mode=ro', uri=True); print(c.execute(sys.argv[1]).fetchone()[0])" "$1"; }
wait_for() { # wait_for SECONDS CMD…: true once CMD succeeds
    local deadline=$(( $(date +%s) + $1 )); shift
    while (( $(date +%s) < deadline )); do "$@" && return 0; sleep 0.5; done
    return 1
}

# Cuts a link with netem (falls back to link down where sch_netem is missing).
cut() {
    if ! in_ns "$1" tc qdisc add dev "$2" root netem loss 100% 2>/dev/null; then
        in_ns "$1" ip link set "$2" down
    fi
}
heal() {
    in_ns "$1" tc qdisc del dev "$2" root 2>/dev/null
    in_ns "$1" ip link set "$2" up
}

# ---- topology -------------------------------------------------------------
set -e
for ns in "$HUB" "$CTL" "$TGT"; do ip netns add "$ns"; in_ns "$ns" ip link set lo up; done
in_ns "$HUB" ip link add brc type bridge
in_ns "$HUB" ip link add brt type bridge
in_ns "$HUB" ip link set brc up
in_ns "$HUB" ip link set brt up
link() { # link NS IFNAME HUB_IF BRIDGE ADDR
    ip link add "$3" netns "$HUB" type veth peer name "$2" netns "$1"
    in_ns "$HUB" ip link set "$3" master "$4" up
    in_ns "$1" ip addr add "$5" dev "$2"
    in_ns "$1" ip link set "$2" up
}
link "$CTL" eth-c h-ctl brc 10.77.0.10/24
link "$TGT" eth-t h-tgt brt 10.77.1.20/24
n=1
for r in "${REGIONS[@]}"; do
    ns="$ID-$r"
    ip netns add "$ns"; in_ns "$ns" ip link set lo up
    link "$ns" eth-c "h-${r}c" brc "10.77.0.3$n/24"
    link "$ns" eth-t "h-${r}t" brt "10.77.1.3$n/24"
    n=$((n + 1))
done
set +e
log "namespaces up: $HUB $CTL $TGT ${REGIONS[*]/#/$ID-}"

# ---- processes ------------------------------------------------------------
mkdir -p "$WORK/www" && echo ok > "$WORK/www/index.html"
(cd "$WORK/www" && exec ip netns exec "$TGT" python3 -m http.server 8000 --bind 10.77.1.20 >"$WORK/target.log" 2>&1) &
PIDS+=($!)

cat > "$WORK/hook.py" <<'PY'
import http.server, sys
out = open(sys.argv[1], "a", buffering=1)
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        out.write(body.decode() + "\n")
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", 9099), H).serve_forever()
PY
ip netns exec "$CTL" python3 "$WORK/hook.py" "$WORK/hook.jsonl" >"$WORK/hook.log" 2>&1 &
PIDS+=($!)
touch "$WORK/hook.jsonl"

{
    cat <<EOF
[server]
grpc_listen = "10.77.0.10:7443"
http_listen = "10.77.0.10:8080"
# Private namespaces made by this script: plaintext and a read-only API
# without credentials are opted into by name (the defaults refuse both).
allow_plaintext_probes = true
allow_insecure_http = true
allow_unauthenticated = true
[store]
path = "$WORK/outpost.db"
[alerting]
offline_after = "5s"
EOF
    for r in "${REGIONS[@]}"; do
        echo "token-$r-0123456789abcdef0123456789abcdef" > "$WORK/$r.token"
        printf '[[probes]]\nname = "probe-%s"\nregion = "%s"\ntoken = { file = "%s" }\n' "$r" "$r" "$WORK/$r.token"
    done
    cat <<EOF
[[checks]]
id = "web"
interval = "500ms"
timeout = "400ms"
http = { url = "http://10.77.1.20:8000/" }
alert = { min_regions = 2, confirmations = 2, recoveries = 2 }
[[sinks]]
name = "hook"
webhook = { url = "http://127.0.0.1:9099/hook" }
[[sinks]]
name = "log"
console = {}
[[routes]]
name = "all"
sinks = ["hook", "log"]
EOF
} > "$WORK/controller.toml"
OUTPOST_LOG=info ip netns exec "$CTL" "$BIN/outpost-controller" run --config "$WORK/controller.toml" >"$WORK/controller.log" 2>&1 &
PIDS+=($!)
wait_for 20 api /readyz >/dev/null || { fail "controller did not become ready"; echo "$PASSED passed, $FAILED failed"; exit 1; }

n=1
for r in "${REGIONS[@]}"; do
    cat > "$WORK/$r.toml" <<EOF
[probe]
name = "probe-$r"
region = "$r"
[controller]
url = "http://10.77.0.10:7443"
token = { file = "$WORK/$r.token" }
allow_plaintext = true
heartbeat_interval = "1s"
[outbox]
path = "$WORK/outbox-$r"
EOF
    OUTPOST_LOG=info ip netns exec "$ID-$r" "$BIN/outpost-probe" run --config "$WORK/$r.toml" >"$WORK/probe-$r.log" 2>&1 &
    PIDS+=($!)
    n=$((n + 1))
done

all_ok() { api /api/v1/checks | jq_py "all(r['state'] == 'OK' for r in d['checks'][0]['regions'])" 2>/dev/null | grep -q True; }
if wait_for 30 all_ok; then pass "three regions report the target OK"; else fail "regions never all OK: $(api /api/v1/checks)"; fi

region_state() { api /api/v1/checks | jq_py "[r['state'] for r in d['checks'][0]['regions'] if r['region'] == '$1'][0]" 2>/dev/null; }
check_alerts() { api /api/v1/alerts | jq_py "len([a for a in d['alerts'] if a['kind'] == 'check_failing'])" 2>/dev/null; }
offline_alerts() { api /api/v1/alerts | jq_py "len([a for a in d['alerts'] if a['kind'] == 'probe_offline' and a['probe'] == '$1'])" 2>/dev/null; }
offline_alert_state() { api /api/v1/alerts | jq_py "[a['state'] for a in d['alerts'] if a['kind'] == 'probe_offline' and a['probe'] == '$1'][0]" 2>/dev/null; }
hook_count() { grep -c "$1" "$WORK/hook.jsonl" 2>/dev/null || true; }

# ---- (i) a region cut from its target: no page -----------------------------
log "(i) cutting r1 from the target"
cut "$ID-r1" eth-t
is_failing() { [[ "$(region_state r1)" == "FAILING" ]]; }
if wait_for 15 is_failing; then pass "r1 sees the target failing"; else fail "r1 never FAILING (state $(region_state r1))"; fi
sleep 4  # 8 more intervals: far past confirmations
if [[ "$(region_state r2)" == "OK" && "$(region_state r3)" == "OK" ]]; then pass "r2 and r3 still OK"; else fail "r2/r3 not OK"; fi
if [[ "$(check_alerts)" == "0" ]]; then pass "no check alert in /api/v1/alerts (quorum)"; else fail "check alert raised: $(api /api/v1/alerts)"; fi
if [[ "$(hook_count check_failing)" == "0" ]] && ! grep -q "ALERT TRIGGERED" "$WORK/controller.log"; then
    pass "no page at the webhook or console sink"
else
    fail "a page went out: $(cat "$WORK/hook.jsonl")"
fi
heal "$ID-r1" eth-t
is_ok() { [[ "$(region_state r1)" == "OK" ]]; }
if wait_for 15 is_ok; then pass "r1 back to OK after healing"; else fail "r1 did not recover"; fi

# ---- (ii) a region cut from the controller: one probe_offline, then backfill --
r2_results() { sql "SELECT COUNT(*) FROM results WHERE probe = 'probe-r2'"; }
r2_in() { sql "SELECT COUNT(*) FROM results WHERE probe = 'probe-r2' AND started_at_ms BETWEEN $1 AND $2"; }
log "(ii) cutting r2 from the controller"
CUT_MS=$(now_ms)
cut "$ID-r2" eth-c
has_offline() { [[ "$(offline_alerts probe-r2)" == "1" ]]; }
if wait_for 20 has_offline; then
    pass "one probe_offline alert for probe-r2 ($(( ($(now_ms) - CUT_MS) / 1000 ))s after the cut, offline_after 5s)"
else
    fail "no probe_offline alert: $(api /api/v1/alerts)"
fi
# Stay cut past both keepalives (15 s) with margin: the alert stays open.
CUT_FOR_MS=25000
still_open=1
while (( $(now_ms) - CUT_MS < CUT_FOR_MS )); do
    if [[ "$(offline_alerts probe-r2)" != "1" || "$(offline_alert_state probe-r2)" != "open" ]]; then
        still_open=0; break
    fi
    sleep 1
done
if [[ $still_open == 1 && "$(hook_count '"probe_offline"')" -ge 1 ]]; then
    pass "still exactly one open probe_offline alert after $(( CUT_FOR_MS / 1000 ))s cut, delivered to the webhook"
else
    fail "probe_offline alerts: $(offline_alerts probe-r2) ($(offline_alert_state probe-r2)), webhook: $(hook_count '"probe_offline"')"
fi
if [[ "$(region_state r2)" == "STALE" && "$(check_alerts)" == "0" ]]; then
    pass "r2 shown STALE, no check page"
else
    fail "r2 state $(region_state r2), check alerts $(check_alerts)"
fi
HEAL_MS=$(now_ms)
BEFORE=$(r2_results)
DURING_BEFORE=$(r2_in $((CUT_MS + 2000)) $((HEAL_MS - 1000)))
heal "$ID-r2" eth-c
log "healed r2 ($(( (HEAL_MS - CUT_MS) / 1000 ))s cut); r2 results stored so far: $BEFORE, from inside the cut: $DURING_BEFORE"
backfilled() { [[ "$(r2_in $((CUT_MS + 2000)) $((HEAL_MS - 1000)))" -gt $(( (HEAL_MS - CUT_MS - 3000) / 1000 )) ]]; }
if wait_for 60 backfilled; then
    pass "r2's results from the cut were backfilled ($(r2_in $((CUT_MS + 2000)) $((HEAL_MS - 1000))) results inside the cut; total $BEFORE -> $(r2_results))"
else
    fail "no backfill: inside the cut $(r2_in $((CUT_MS + 2000)) $((HEAL_MS - 1000))), total $(r2_results)"
fi
resolved() { [[ "$(offline_alert_state probe-r2)" == "resolved" ]]; }
if wait_for 30 resolved; then pass "probe_offline resolved when r2 came back"; else fail "probe_offline still $(offline_alert_state probe-r2)"; fi
triggers=$(grep '"probe_offline"' "$WORK/hook.jsonl" | grep -c '"event":"trigger"' || true)
if [[ "$triggers" == "1" && "$(hook_count check_failing)" == "0" ]]; then
    pass "exactly one probe_offline trigger at the webhook, no check page"
else
    fail "webhook got $triggers probe_offline triggers: $(cat "$WORK/hook.jsonl")"
fi
resolves=$(grep '"probe_offline"' "$WORK/hook.jsonl" | grep -c '"event":"resolve"' || true)
if [[ "$resolves" == "1" ]]; then
    pass "exactly one probe_offline resolve at the webhook, after the heal"
else
    fail "webhook got $resolves probe_offline resolves: $(cat "$WORK/hook.jsonl")"
fi
dups=$(sql "SELECT COUNT(*) - COUNT(DISTINCT result_id) FROM results")
if [[ "$dups" == "0" ]]; then pass "no result stored twice"; else fail "$dups duplicate results"; fi

log "done in $(( $(date +%s) - START ))s"
echo "$PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]

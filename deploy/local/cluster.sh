#!/usr/bin/env bash
# A local three-zone Strata cluster on 127.0.0.1: core nodes 1, 2, 3 in zones
# az-a, az-b, az-c and one edge agent. The first core node and the edge use
# the default ports, so the CLI works without flags:
#   node 1: client 127.0.0.1:7500, peer 127.0.0.1:7600, metrics :9501
#   node 2: client 127.0.0.1:7501, peer 127.0.0.1:7601, metrics :9502
#   node 3: client 127.0.0.1:7502, peer 127.0.0.1:7602, metrics :9503
#   edge:   127.0.0.1:7400, metrics :9400
# Data, configs, logs and the dev CA live under ./cluster-data (or
# $STRATA_CLUSTER_DIR). Binaries come from target/release (built if missing)
# or $STRATA_BIN_DIR.
#
#   cluster.sh up | down | status | kill NODE | restart NODE
#   NODE is 1, 2, 3 or edge. `kill` is SIGKILL; `restart` stops (SIGTERM) and starts.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="${STRATA_CLUSTER_DIR:-$PWD/cluster-data}"
bin="${STRATA_BIN_DIR:-$root/target/release}"
zones=(az-a az-b az-c)

ensure_bins() {
  if [ ! -x "$bin/strata-core" ] || [ ! -x "$bin/strata-edge" ] || [ ! -x "$bin/strata" ]; then
    (cd "$root" && cargo build --release --bins --locked)
  fi
}

write_configs() {
  mkdir -p "$dir/logs" "$dir/run"
  "$bin/strata" dev --data-dir "$dir" --pki-only >/dev/null
  # Each node's peer certificate names its id: the peer ports serve members only.
  for i in 1 2 3; do
    [ -f "$dir/tls/peer-$i.pem" ] || "$bin/strata" identity issue-node "$i" --out "$dir/tls" --ca-dir "$dir/tls" >/dev/null
  done
  local peers=""
  for i in 1 2 3; do
    peers+="
[[peers]]
id = $i
zone = \"${zones[$((i-1))]}\"
addr = \"127.0.0.1:$((7499+i))\"
peer_addr = \"127.0.0.1:$((7599+i))\"
"
  done
  for i in 1 2 3; do
    cat > "$dir/core-$i.toml" <<TOML
# Written by deploy/local/cluster.sh; see deploy/config/core.example.toml.
node_id = $i
zone = "${zones[$((i-1))]}"
data_dir = "$dir/core-$i"
listen_addr = "127.0.0.1:$((7499+i))"
peer_addr = "127.0.0.1:$((7599+i))"
metrics_addr = "127.0.0.1:$((9500+i))"
tls_cert = "$dir/tls/node.pem"
tls_key = "$dir/tls/node-key.pem"
peer_cert = "$dir/tls/peer-$i.pem"
peer_key = "$dir/tls/peer-$i-key.pem"
tls_ca = "$dir/tls/ca.pem"
superusers = ["admin"]
$peers
TOML
  done
  cat > "$dir/edge.toml" <<TOML
# Written by deploy/local/cluster.sh; see deploy/config/edge.example.toml.
data_dir = "$dir/edge"
listen_addr = "127.0.0.1:7400"
metrics_addr = "127.0.0.1:9400"
tls_cert = "$dir/tls/edge.pem"
tls_key = "$dir/tls/edge-key.pem"
core_addrs = ["127.0.0.1:7500", "127.0.0.1:7501", "127.0.0.1:7502"]
core_ca = "$dir/tls/ca.pem"
superusers = ["admin"]
TOML
}

pidfile() { echo "$dir/run/$1.pid"; }
running() { local f; f="$(pidfile "$1")"; [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; }

start() {
  local name="$1" exe cfg
  if running "$name"; then echo "$name already running (pid $(cat "$(pidfile "$name")"))"; return; fi
  if [ "$name" = edge ]; then exe=strata-edge; cfg="$dir/edge.toml"; else exe=strata-core; cfg="$dir/core-$name.toml"; fi
  nohup "$bin/$exe" --config "$cfg" >>"$dir/logs/$name.log" 2>&1 &
  echo $! > "$(pidfile "$name")"
  echo "started $name (pid $!, log $dir/logs/$name.log)"
}

stop() {
  local name="$1" sig="${2:-TERM}" f pid
  f="$(pidfile "$name")"
  if ! running "$name"; then rm -f "$f"; return; fi
  pid="$(cat "$f")"
  kill "-$sig" "$pid"
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
  rm -f "$f"
  echo "stopped $name (SIG$sig)"
}

check_node() {
  case "${1:-}" in 1|2|3|edge) ;; *) echo "NODE must be 1, 2, 3 or edge, got '${1:-}'" >&2; exit 2 ;; esac
}

case "${1:-}" in
  up)
    ensure_bins; write_configs
    for n in 1 2 3 edge; do start "$n"; done
    # The edge agent forwards as principal `edge` (and reads the AWS keys of
    # the Kinesis API: `verify`); the CLI is `admin` (the dev identity beside
    # the CA). `acl add` waits for the metadata leader.
    for _ in $(seq 1 60); do
      if "$bin/strata" acl list --ca "$dir/tls/ca.pem" --core 127.0.0.1:7500,127.0.0.1:7501,127.0.0.1:7502 2>/dev/null | grep -q "^ *[0-9]*  edge  *[a-z,]*verify"; then break; fi
      "$bin/strata" acl add --principal edge --allow produce,describe,verify --stream '*' --ca "$dir/tls/ca.pem" --core 127.0.0.1:7500,127.0.0.1:7501,127.0.0.1:7502 >/dev/null 2>&1 && break
      sleep 1
    done
    echo "CA: $dir/tls/ca.pem   try: STRATA_CA=$dir/tls/ca.pem $bin/strata cluster status"
    ;;
  down) for n in edge 3 2 1; do stop "$n"; done ;;
  status)
    for n in 1 2 3 edge; do
      if running "$n"; then echo "$n: running (pid $(cat "$(pidfile "$n")"))"; else echo "$n: stopped"; fi
    done
    if [ -x "$bin/strata" ] && [ -f "$dir/tls/ca.pem" ]; then
      "$bin/strata" cluster status --ca "$dir/tls/ca.pem" --core 127.0.0.1:7500,127.0.0.1:7501,127.0.0.1:7502 || true
    fi
    ;;
  kill) check_node "${2:-}"; stop "$2" KILL ;;
  restart) check_node "${2:-}"; ensure_bins; stop "$2" TERM; start "$2" ;;
  *) echo "usage: $0 up|down|status|kill NODE|restart NODE" >&2; exit 2 ;;
esac

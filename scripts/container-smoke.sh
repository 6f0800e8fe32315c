#!/usr/bin/env bash
# Container smoke test (issue 6, DESIGN.md §8): the image builds, runs read-only against the simulator,
# settles a batch, answers /healthz, and stops with exit code 0 within the grace period.
#
#   scripts/container-smoke.sh            from anywhere; works on the repository it lives in
#
# Where docker cannot be made to work (no ../shared/tools/docker-base.sh, or `docker-base.sh up` fails: no
# root, no apt, no dockerd), it prints ONE line `container smoke: skipped: <reason>` and exits 0.
# Any failure once docker works is a real failure: it prints the containers' logs and exits 1.
#
# Environment:
#   IBW_SMOKE_IMAGE        image tag to build and run             (default iot-batch-watcher:ci)
#   IBW_SMOKE_SETTLE_S     how long to wait for batch.settled     (default 90)
#   IBW_SMOKE_KEEP_DOCKER  1 = do not run `docker-base.sh down` at the end (for repeated local runs)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BASE_SCRIPT=$ROOT/../shared/tools/docker-base.sh
IMAGE=${IBW_SMOKE_IMAGE:-iot-batch-watcher:ci}
SETTLE_S=${IBW_SMOKE_SETTLE_S:-90}
STOP_GRACE_S=10
RUN_ID=$$
SIM=ibw-smoke-sim-$RUN_ID
WATCHER=ibw-smoke-watcher-$RUN_ID
VOLUME=ibw-smoke-data-$RUN_ID
LOG_DIR=${TMPDIR:-/tmp}/ibw-container-smoke-$RUN_ID
mkdir -p "$LOG_DIR"

say() { echo "container smoke: $*"; }
skip() {
  say "skipped: $*"
  rm -rf "$LOG_DIR"
  exit 0
}
# NOTE: `docker logs | grep -q` under pipefail can fail on SIGPIPE even when grep matched; read the logs first.
logs_contain() {
  local logs
  logs=$(docker logs "$1" 2>&1 || true)
  grep -q -- "$2" <<<"$logs"
}

# ---- 1. docker, or skip with one line -------------------------------------------------------------------
[ -f "$BASE_SCRIPT" ] || skip "../shared/tools/docker-base.sh not found"
if ! bash "$BASE_SCRIPT" up >"$LOG_DIR/docker-base-up.log" 2>&1; then
  reason=$(tail -n 1 "$LOG_DIR/docker-base-up.log" | tr -d '\r')
  bash "$BASE_SCRIPT" down >/dev/null 2>&1 || true # a dockerd it did start must not outlive us
  skip "docker-base.sh up failed: ${reason:-no output}"
fi
command -v docker >/dev/null 2>&1 || skip "no docker binary after docker-base.sh up"
docker info >/dev/null 2>&1 || skip "docker does not answer after docker-base.sh up"

cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    for c in "$SIM" "$WATCHER"; do
      if docker container inspect "$c" >/dev/null 2>&1; then
        echo "----- docker logs $c (last 60 lines) -----" >&2
        docker logs --tail 60 "$c" >&2 2>&1 || true
      fi
    done
  fi
  docker rm -f -v "$WATCHER" "$SIM" >/dev/null 2>&1 || true
  docker volume rm -f "$VOLUME" >/dev/null 2>&1 || true
  if [ "${IBW_SMOKE_KEEP_DOCKER:-0}" != "1" ]; then
    bash "$BASE_SCRIPT" down >/dev/null 2>&1 || true
  fi
  rm -rf "$LOG_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
  say "FAILED: $*" >&2
  exit 1
}

# ---- 2. build ---------------------------------------------------------------------------------------------
build_start=$(date +%s)
revision=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
if ! docker build -t "$IMAGE" --build-arg "REVISION=$revision" . >"$LOG_DIR/build.log" 2>&1; then
  tail -n 40 "$LOG_DIR/build.log" >&2
  fail "docker build failed"
fi
say "built $IMAGE in $(($(date +%s) - build_start)) s"

# ---- 3. simulator, then the watcher in its network namespace (http:// is allowed for loopback only) --------
docker volume create "$VOLUME" >/dev/null
docker run -d --name "$SIM" --no-healthcheck --read-only --tmpfs /tmp "$IMAGE" \
  node dist/cli.js simulator --host 127.0.0.1 --port 8787 --scenario /app/config/demo-scenario.yaml >/dev/null

sim_ready=0
for _ in $(seq 60); do
  if logs_contain "$SIM" '8787'; then sim_ready=1; break; fi
  [ "$(docker inspect -f '{{.State.Running}}' "$SIM")" = "true" ] || fail "the simulator exited early"
  sleep 0.5
done
[ "$sim_ready" = 1 ] || fail "the simulator did not print its URL within 30 s"

docker run -d --name "$WATCHER" --read-only --tmpfs /tmp \
  -v "$VOLUME:/var/lib/iot-batch-watcher" \
  --network "container:$SIM" \
  -e ALIBABA_CLOUD_ACCESS_KEY_ID=SimAccessKeyId \
  -e ALIBABA_CLOUD_ACCESS_KEY_SECRET=SimAccessKeySecret \
  -e LOG_LEVEL=info \
  "$IMAGE" >/dev/null

# ---- 4. a batch settles (bounded) ---------------------------------------------------------------------------
settled=0
deadline=$(($(date +%s) + SETTLE_S))
while [ "$(date +%s)" -lt "$deadline" ]; do
  if logs_contain "$WATCHER" 'batch\.settled'; then settled=1; break; fi
  [ "$(docker inspect -f '{{.State.Running}}' "$WATCHER")" = "true" ] \
    || fail "the watcher exited early (exit code $(docker inspect -f '{{.State.ExitCode}}' "$WATCHER"))"
  sleep 1
done
[ "$settled" = 1 ] || fail "no batch.settled line in the watcher's logs within ${SETTLE_S} s"
say "a batch settled"

# ---- 5. the endpoints answer from inside the container; results landed on the volume ------------------------
# shellcheck disable=SC2016 # the JavaScript is meant literally
probe='const [path, want] = process.argv.slice(1);
fetch("http://127.0.0.1:9464" + path, { signal: AbortSignal.timeout(5000) }).then(async (r) => {
  const body = await r.text();
  if (r.status !== 200 || !body.includes(want)) { console.error(path, r.status, body.slice(0, 200)); process.exit(1); }
}, (e) => { console.error(path, e.message); process.exit(1); });'
docker exec "$WATCHER" node -e "$probe" /healthz ok || fail "/healthz did not answer 200 ok"
docker exec "$WATCHER" node -e "$probe" /metrics ibw_api_requests_total || fail "/metrics lacks ibw_api_requests_total"
results=$(docker exec "$WATCHER" find /var/lib/iot-batch-watcher/results -name '*.json' -type f | wc -l)
[ "$results" -ge 1 ] || fail "no result file under /var/lib/iot-batch-watcher/results"
say "/healthz answered; ${results} result file(s) on the volume"

# ---- 6. docker stop: SIGTERM, clean exit 0 within the grace period ------------------------------------------
stop_start=$(date +%s)
docker stop -t "$STOP_GRACE_S" "$WATCHER" >/dev/null
stop_s=$(($(date +%s) - stop_start))
exit_code=$(docker inspect -f '{{.State.ExitCode}}' "$WATCHER")
[ "$exit_code" = 0 ] || fail "the watcher exited with ${exit_code} after docker stop (137 = killed after the grace period)"
[ "$stop_s" -lt "$STOP_GRACE_S" ] || fail "docker stop took ${stop_s} s (grace period ${STOP_GRACE_S} s)"
say "passed (docker stop: exit 0 in ${stop_s} s)"

#!/usr/bin/env bash
# One Ray node of a SLURM job, run by launch/slurm/ray_sweep.sbatch through `srun` on each node:
#   ray_node.sh head            start the head (GCS) of this job's Ray cluster
#   ray_node.sh worker ADDRESS  join the head at ADDRESS (host:port)
#   ray_node.sh stop            (a separate step) stop this job's Ray on this node
# head/worker run `ray start --block` and record its pid in <temp dir>.pid; `stop` sends SIGTERM to
# that process only, so Ray drains and stops its own processes in order (signalling every process
# of the step at once, as cancelling the step does, leaves Ray waiting 30 s for a dead GCS). When
# `ray start` has ended, the head/worker step removes the per-job temp dir and exits.
#
# From the batch script's environment: LOWBIT_PYTHON (with ray installed), LOWBIT_RAY_PORT_BASE (this job's
# port block), LOWBIT_RAY_TMP (per-job temp dir, node-local), RAY_AUTH_MODE / RAY_AUTH_TOKEN.
set -euo pipefail

role=${1:?usage: ray_node.sh head | worker ADDRESS | stop}
base=${LOWBIT_RAY_PORT_BASE:?}
tmp=${LOWBIT_RAY_TMP:?}
python=${LOWBIT_PYTHON:?}
pidfile=$tmp.pid

if [[ $role == stop ]]; then
    pid=$(cat "$pidfile" 2>/dev/null) || exit 0
    kill -TERM "$pid" 2>/dev/null || exit 0
    for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    exit 0
fi

# CPUs and GPUs of this job on this node, from SLURM's variables (set per node inside the step)
cpus=${LOWBIT_RAY_CPUS:-${SLURM_CPUS_PER_TASK:-${SLURM_CPUS_ON_NODE:-1}}}
if [[ -n ${LOWBIT_RAY_GPUS:-} ]]; then
    gpus=$LOWBIT_RAY_GPUS
elif [[ -n ${SLURM_GPUS_ON_NODE:-} ]]; then
    gpus=$SLURM_GPUS_ON_NODE
elif [[ -n ${CUDA_VISIBLE_DEVICES:-} && ${CUDA_VISIBLE_DEVICES} != "NoDevFound" ]]; then
    gpus=$(awk -F, '{print NF}' <<< "$CUDA_VISIBLE_DEVICES")
else
    gpus=0
fi

# every port Ray opens, inside this job's block: two jobs on one node never collide
ports=(--node-manager-port $((base + 1)) --object-manager-port $((base + 2))
       --dashboard-agent-listen-port $((base + 4)) --dashboard-agent-grpc-port $((base + 5))
       --metrics-export-port $((base + 6)) --runtime-env-agent-port $((base + 7))
       --min-worker-port $((base + 20)) --max-worker-port $((base + 199)))
common=(--block --temp-dir "$tmp" --num-cpus "$cpus" --num-gpus "$gpus" --disable-usage-stats "${ports[@]}")
[[ -n ${LOWBIT_RAY_NODE_IP:-} ]] && common+=(--node-ip-address "$LOWBIT_RAY_NODE_IP")

if [[ $role == head ]]; then
    args=(--head --port "$base" --include-dashboard=false --dashboard-host 127.0.0.1 --dashboard-port $((base + 8)))
    # Ray starts a Ray Client server (default port 10001, on the node's address) when ray[client] is
    # installed; give it this job's port so two jobs do not collide (it also needs the token)
    if "$python" -c "import grpc" 2>/dev/null; then
        args+=(--ray-client-server-port $((base + 3)))
    fi
else
    args=(--address "${2:?worker needs the head address}")
fi

echo "ray_node.sh: $role on $(hostname): $cpus CPUs, $gpus GPUs, ports $base..$((base + 199)), temp $tmp"
"$python" -m ray.scripts.scripts start "${args[@]}" "${common[@]}" &
ray_pid=$!
echo "$ray_pid" > "$pidfile"

stop() {
    trap - TERM INT
    if kill -0 "$ray_pid" 2>/dev/null; then
        kill -TERM "$ray_pid" 2>/dev/null || true  # `ray start --block` stops the processes it started
        for _ in $(seq 1 30); do kill -0 "$ray_pid" 2>/dev/null || break; sleep 1; done
        kill -KILL "$ray_pid" 2>/dev/null || true
    fi
    wait "$ray_pid" 2>/dev/null || true
    rm -f "$pidfile"
    [[ ${LOWBIT_KEEP_RAY_TMP:-0} == 1 ]] || rm -rf "$tmp"
    exit 0
}
trap stop TERM INT
wait "$ray_pid" || true
stop
